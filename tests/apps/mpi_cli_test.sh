#!/usr/bin/env bash
# `mpirun -np 2 qforge ...` (Note [Data parallelism], train/distributed.h), run by ctest: a
# data-parallel `qforge train` prints once and writes one run; ranks that would train
# different things are refused by name; commands not yet data-parallel are refused; a
# 2-rank checkpoint resumes in one process.
#   mpi_cli_test.sh MPIEXEC QFORGE_BINARY SOURCE_DIR
set -uo pipefail
mpiexec=$1 qforge=$2 source=${3:-.}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 QFORGE_THREADS=1
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }
tiny=(--set data.train_limit=1280 --set data.test_limit=500 --set train.epochs=2)
config=$source/configs/jermmy.json

# Two ranks train; the output appears once, rank 0 writes the files.
out=$("$mpiexec" -np 2 "$qforge" train "$config" "${tiny[@]}" --out "$tmp/two" 2>&1) || fail "2-rank train: $out"
[[ $(grep -c '^fp32: test accuracy' <<<"$out") == 1 ]] || fail "2-rank train printed its result $(grep -c '^fp32: test accuracy' <<<"$out") times: $out"
for file in config.json model.qf checkpoint.qf summary.json metrics.jsonl; do
  [[ -s $tmp/two/$file ]] || fail "2-rank train wrote no $file"
done

# The same number of ranks twice: byte-identical model files.
"$mpiexec" -np 2 "$qforge" train "$config" "${tiny[@]}" --out "$tmp/again" >/dev/null 2>&1 || fail "2-rank train, again"
cmp -s "$tmp/two/model.qf" "$tmp/again/model.qf" || fail "two 2-rank runs wrote different model.qf files"

# The checkpoint a 2-rank run wrote resumes in one process (here: nothing left to train, the
# model is evaluated and kept; mid-run resumption across N is tested in test_distributed).
"$mpiexec" -np 2 "$qforge" train "$config" "${tiny[@]}" --out "$tmp/resume" >/dev/null 2>&1 || fail "2-rank train for resume"
out=$("$qforge" train "$config" "${tiny[@]}" --out "$tmp/resume" --resume 2>&1) || fail "1-process resume of a 2-rank run: $out"
grep -q "resuming fp32 after epoch 2" <<<"$out" || fail "the 1-process resume did not start from the 2-rank checkpoint: $out"

# Ranks that would train different things (MPMD: another --set on rank 1) are refused by name.
out=$("$mpiexec" -np 1 "$qforge" train "$config" "${tiny[@]}" --out "$tmp/differ" : \
      -np 1 "$qforge" train "$config" "${tiny[@]}" --out "$tmp/differ" --set train.seed=9 2>&1)
(($? != 0)) || fail "ranks with different configs were not refused"
grep -q "rank 1's config (after --set) differs from rank 0's" <<<"$out" || fail "the refusal does not name rank 1's config: $out"
[[ ! -e $tmp/differ/model.qf ]] || fail "a refused run wrote model.qf"

# QAT on 2 ranks: fp32 and QAT data parallel (observers reduced), rank 0 converts and writes.
out=$("$mpiexec" -np 2 "$qforge" qat "$config" "${tiny[@]}" --set train.epochs=1 --out "$tmp/qat" 2>&1) || fail "2-rank qat: $out"
[[ $(grep -c '^int8: integer model' <<<"$out") == 1 ]] || fail "2-rank qat reported its integer model $(grep -c '^int8: integer model' <<<"$out") times: $out"
[[ -s $tmp/qat/model_qat.qfm && -s $tmp/qat/model_qat.qf ]] || fail "2-rank qat wrote no model_qat.qf/.qfm"

# PTQ on 2 ranks from that fp32 model: both calibrate (each its rows of every batch), rank 0 writes.
out=$("$mpiexec" -np 2 "$qforge" ptq "$config" "${tiny[@]}" --set quant.fp32_checkpoint="$tmp/two/model.qf" \
      --set quant.ptq.calibration_batches=4 --out "$tmp/ptq" 2>&1) || fail "2-rank ptq: $out"
[[ $(grep -c '^ptq: calibrated on 4 batches' <<<"$out") == 1 ]] || fail "2-rank ptq reported its calibration $(grep -c '^ptq: calibrated on 4 batches' <<<"$out") times: $out"
[[ -s $tmp/ptq/model_ptq.qfm ]] || fail "2-rank ptq wrote no model_ptq.qfm"

# A study on 2 ranks: the fp32 model trained by both, the runs spread over them, one table.
out=$("$mpiexec" -np 2 "$qforge" sweep "$config" "${tiny[@]}" --set train.epochs=1 --set quant.ptq.calibration_batches=2 \
      --set 'sweep={"bits": [4, 8], "seeds": 1, "methods": ["ptq"]}' --out "$tmp/sweep" 2>&1) || fail "2-rank sweep: $out"
[[ $(grep -c '^fake-quant test accuracy' <<<"$out") == 1 ]] || fail "2-rank sweep printed its table $(grep -c '^fake-quant test accuracy' <<<"$out") times: $out"
[[ $(wc -l < "$tmp/sweep/sweep.csv") == 3 ]] || fail "2-rank sweep.csv: $(cat "$tmp/sweep/sweep.csv")"
[[ -s $tmp/sweep/runs/ptq_w8a8_s0/model_ptq.qfm ]] || fail "rank 1's run left no integer model"

# A command that is not data-parallel yet says so instead of running N copies.
out=$("$mpiexec" -np 2 "$qforge" export "$config" --checkpoint "$tmp/two/model.qf" --out "$tmp/two.onnx" 2>&1)
(($? != 0)) || fail "2-rank export was not refused"
grep -q "qforge export runs as one process" <<<"$out" || fail "the export refusal says: $out"

((failures == 0)) && echo "mpi cli: all checks passed"
exit $((failures > 0))
