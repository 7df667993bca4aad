#!/usr/bin/env bash
# ONNX Runtime checks qforge's ONNX export — a consumer qforge did not write (ctest label
# onnx). Short QAT runs on a slice of Fashion-MNIST train each model (and evaluate on a
# slice of the test set); the run writes model_qat.onnx beside model_qat.qfm; ONNX Runtime
# (npm onnxruntime-node) runs it on the whole test set and must predict what qforge's integer model predicts on >= 99.8% of the
# images, and its optimized graph must hold QLinearConv (ONNX Runtime fused the QDQ pattern
# into integer convolutions). The float lenet, exported from model.qf, must give qforge's
# logits within 1e-4 (relative to the largest). Then the import: PyTorch-made float models (below).
#   ort_agreement.sh QFORGE SOURCE_DIR WORK_DIR
set -uo pipefail
qforge=$1 source=$2 work=$3
export ORT_DIR=${ORT_DIR:-/opt/qforge/npm}
command -v node >/dev/null || { echo "no node (Debian's nodejs; scripts/install-deps installs it)"; exit 1; }
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[[ -d $ORT_DIR/node_modules/onnxruntime-node ]] || { echo "no onnxruntime-node in $ORT_DIR (scripts/install-deps installs it)"; exit 1; }
rm -rf "$work" && mkdir -p "$work"
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }

# qat NAME CONFIG [--set ...]: a short QAT run, then ONNX Runtime against the integer model.
qat() {
  local name=$1 config=$source/configs/$2 dir=$work/$1
  shift 2
  "$qforge" qat "$config" --out "$dir" --set data.train_limit=6000 --set data.test_limit=2000 --set train.epochs=1 \
    --set quant.qat.epochs=1 "$@" > "$dir.log" 2>&1 || { fail "$name: qforge qat (see $dir.log)"; tail -3 "$dir.log"; return; }
  [[ -f $dir/model_qat.onnx ]] || { fail "$name: the run wrote no model_qat.onnx"; return; }
  "$qforge" eval "$config" --checkpoint "$dir/model_qat.qfm" --predictions "$dir/int8.txt" 2>/dev/null | tail -1
  node "$source/tests/onnx/ort_check.js" "$dir/model_qat.onnx" "$images" 10000 0.2860 0.3530 "$dir/int8.txt" \
    --optimized "$dir/optimized.onnx" 2>/dev/null || fail "$name: ONNX Runtime disagrees with the integer model"
  local fused
  fused=$("$qforge" inspect "$dir/optimized.onnx" | grep -c "QLinearConv") || true
  echo "$name: ONNX Runtime's optimized graph: $("$qforge" inspect "$dir/optimized.onnx" | tail -n +2 | tr -s ' ' | tr '\n' ',')"
  [[ ${REQUIRE_FUSED:-1} == 0 || $fused -gt 0 ]] || fail "$name: ONNX Runtime ran no QLinearConv"
}

qat lenet lenet.json
qat jermmy jermmy.json
qat resnet8 resnet8.json
# 4 bits: ONNX Runtime keeps the Clip that narrows each quantize, so it runs these in float
# (FusedConv): agreement is required, integer kernels are not.
REQUIRE_FUSED=0 qat lenet_4bit lenet_4bit.json --set quant.fp32_checkpoint="$work/lenet/model.qf"

# The float lenet the first run trained: plain ONNX, logits within 1e-4.
dir=$work/lenet
"$qforge" export "$source/configs/lenet.json" --checkpoint "$dir/model.qf" --out "$dir/fp32.onnx" | tail -1
"$qforge" eval "$source/configs/lenet.json" --checkpoint "$dir/model.qf" --predictions "$dir/fp32.txt" \
  --logits "$dir/fp32.f32" 2>/dev/null | tail -1
node "$source/tests/onnx/ort_check.js" "$dir/fp32.onnx" "$images" 10000 0.2860 0.3530 "$dir/fp32.txt" \
  --logits "$dir/fp32.f32" --tolerance 1e-4 --min-identical 0.998 2>/dev/null || fail "float lenet: logits differ"

# The LSTM (rows of Fashion-MNIST images as sequences): the float model as ONNX's LSTM (logits
# within 1e-4), the dynamic int8 model (quant.mode dynamic) as DynamicQuantizeLSTM and
# DynamicQuantizeLinear + MatMulInteger. ONNX Runtime quantizes the activations of a dynamic
# model on the full uint8 range where qforge and PyTorch use 0..127 (Note [Dynamic quantization
# in ONNX]), so the two agree in predictions on >= 99%, not on every image.
lstm_data=(--set data.dataset=fashion-mnist --set data.path=/usr/share/datasets/fashion-mnist
           --set data.normalize.mean=0.2860 --set data.normalize.std=0.3530)
lstm=$work/lstm
if "$qforge" train "$source/configs/lstm_digits.json" --out "$lstm" "${lstm_data[@]}" --set data.train_limit=6000 \
     --set data.test_limit=2000 --set train.epochs=1 > "$lstm.log" 2>&1 &&
   "$qforge" ptq "$source/configs/lstm_digits.json" --out "$lstm/dynamic" "${lstm_data[@]}" --set quant.mode=dynamic \
     --set data.test_limit=2000 --set quant.fp32_checkpoint="$lstm/model.qf" >> "$lstm.log" 2>&1 &&
   "$qforge" export "$source/configs/lstm_digits.json" "${lstm_data[@]}" --checkpoint "$lstm/model.qf" \
     --out "$lstm/fp32.onnx" >> "$lstm.log" 2>&1; then
  "$qforge" eval "$source/configs/lstm_digits.json" "${lstm_data[@]}" --checkpoint "$lstm/model.qf" \
    --predictions "$lstm/fp32.txt" --logits "$lstm/fp32.f32" 2>/dev/null | tail -1
  node "$source/tests/onnx/ort_check.js" "$lstm/fp32.onnx" "$images" 10000 0.2860 0.3530 "$lstm/fp32.txt" \
    --logits "$lstm/fp32.f32" --tolerance 1e-4 2>/dev/null || fail "float lstm: logits differ"
  "$qforge" eval "$source/configs/lstm_digits.json" "${lstm_data[@]}" --checkpoint "$lstm/dynamic/model_dynamic.qfm" \
    --predictions "$lstm/dynamic.txt" 2>/dev/null | tail -1
  node "$source/tests/onnx/ort_check.js" "$lstm/dynamic/model_dynamic.onnx" "$images" 10000 0.2860 0.3530 \
    "$lstm/dynamic.txt" --min-identical 0.99 2>/dev/null || fail "dynamic lstm: ONNX Runtime disagrees"
else
  fail "lstm: qforge train, ptq or export (see $lstm.log)"
  tail -3 "$lstm.log"
fi

# Import: float models trained and exported by PyTorch (tests/onnx/models, made by make_models.py).
# qforge's accuracy after import must be PyTorch's (models.json), its logits ONNX Runtime's
# within 1e-4 (relative to the largest); then PTQ on the imported model, whose QDQ export ONNX
# Runtime must run with qforge's predictions.
imported() {
  local name=$1 dir=$work/import_$1 model=$source/tests/onnx/models/$1.onnx
  "$qforge" import "$model" --out "$dir" > "$dir.log" 2>&1 || { fail "$name: qforge import (see $dir.log)"; tail -3 "$dir.log"; return; }
  head -1 "$dir.log"
  local result
  result=$("$qforge" eval "$dir/config.json" --checkpoint "$dir/model.qf" --json --predictions "$dir/fp32.txt" \
    --logits "$dir/fp32.f32" 2>/dev/null) || { fail "$name: qforge eval of the imported model"; return; }
  node -e '
    const [, file, name, eval_json] = process.argv;
    const expected = require(file).models[name].pytorch_test_accuracy, got = JSON.parse(eval_json).accuracy;
    console.log(`${name}: test accuracy ${(100 * got).toFixed(2)}% in qforge after import, ${(100 * expected).toFixed(2)}% in PyTorch`);
    process.exit(Math.abs(got - expected) <= 2e-4 ? 0 : 1);' "$source/tests/onnx/models/models.json" "$name" "$result" ||
    fail "$name: the imported model's accuracy is not PyTorch's"
  node "$source/tests/onnx/ort_check.js" "$model" "$images" 10000 0.2860 0.3530 "$dir/fp32.txt" --logits "$dir/fp32.f32" \
    --tolerance 1e-4 2>/dev/null || fail "$name: the imported model's logits differ from ONNX Runtime's"
  "$qforge" ptq "$dir/config.json" --set data.test_limit=2000 > "$dir.ptq.log" 2>&1 || { fail "$name: qforge ptq (see $dir.ptq.log)"; return; }
  "$qforge" eval "$dir/config.json" --checkpoint "$dir/run/model_ptq.qfm" --predictions "$dir/int8.txt" 2>/dev/null | tail -1
  node "$source/tests/onnx/ort_check.js" "$dir/run/model_ptq.onnx" "$images" 10000 0.2860 0.3530 "$dir/int8.txt" \
    2>/dev/null || fail "$name: ONNX Runtime disagrees with the integer model of the imported model"
}
imported lenet_torch
imported resnet8_torch

# Every configuration the generated agreement test converted (ctest train_real_data exports
# them: tests/train/test_agreement.cpp), run in ONNX Runtime on the first 300 of its real test
# images (all 600 took 92 s of ONNX Runtime's time: the 4- and 2-bit graphs run unfused).
if [[ -n ${AGREEMENT_ONNX:-} ]]; then
  node "$source/tests/onnx/ort_manifest.js" "$AGREEMENT_ONNX" 0.99 300 2>/dev/null ||
    fail "an exported configuration disagrees with its integer model in ONNX Runtime"
fi

((failures == 0)) && echo "onnx_runtime: every model agrees"
exit $((failures > 0))
