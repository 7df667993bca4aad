#!/usr/bin/env bash
# The command line's own behaviour (apps/qforge.cpp), run by ctest: what a user typing a
# wrong command sees, and that the program exits non-zero for it.
#   cli_test.sh QFORGE_BINARY SOURCE_DIR
set -uo pipefail
qforge=$1 source=${2:-.}
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect() {  # expect STATUS PATTERN -- ARGS...: exit status and a line of stderr matching PATTERN
  local status=$1 pattern=$2
  shift 3
  local output code
  output=$("$qforge" "$@" 2>&1 >/dev/null)
  code=$?
  if [[ $code != "$status" ]] || ! grep -qE -- "$pattern" <<<"$output"; then
    echo "FAILED: qforge $* -> exit $code, stderr: $output (wanted exit $status and /$pattern/)"
    failures=$((failures + 1))
  fi
}
expect 1 'unknown command "trian" \(commands: train, qat, ptq,' -- trian configs/lenet.json
expect 1 'unknown command "exprot"' -- exprot
expect 0 '' -- --help
# ONNX import: a file that is not ONNX names itself and writes nothing; a second import into the
# same folder is refused unless --force.
printf 'not an onnx model' > "$tmp/bad.onnx"
expect 1 "$tmp/bad.onnx: not an ONNX model" -- import "$tmp/bad.onnx" --out "$tmp/bad"
[[ ! -e $tmp/bad/model.qf && ! -e $tmp/bad/config.json ]] || { echo "FAILED: a bad import wrote files"; failures=$((failures + 1)); }
tiny=$source/tests/fuzz/corpus/onnx/tiny_torch.onnx
expect 0 '' -- import "$tiny" --out "$tmp/tiny" --set data.dataset=idx --set data.path="$tmp"
expect 1 "$tmp/tiny/model.qf exists; import into another folder, or add --force" -- import "$tiny" --out "$tmp/tiny"
expect 0 '' -- import "$tiny" --out "$tmp/tiny" --force --set data.dataset=idx --set data.path="$tmp"
expect 1 'model.layers: unknown key|unknown key' -- import "$tiny" --out "$tmp/tiny2" --set model.layerz=1
# ONNX export: the weights' type is uint8 or int8 (Note [Weight codes in ONNX]), nothing else,
# and a refused command writes no file.
expect 105 '--onnx-weights: s8 not in \{uint8,int8\}' -- export "$source/configs/lenet.json" --checkpoint "$tiny" \
  --out "$tmp/refused.onnx" --onnx-weights s8
[[ ! -e $tmp/refused.onnx ]] || { echo "FAILED: a refused export wrote a file"; failures=$((failures + 1)); }
# bench's per-op profile (Note [Op profile]): the --json fields and the --profile tables, on
# jermmy at a token duration and small batches (the numbers themselves belong to benchmarks, not
# tests; the sanitizer build runs this too).
"$qforge" bench --model jermmy --seconds 0.01 --batch 8 --infer-batch 8 --json > "$tmp/bench.json" 2>&1 &&
  python3 - "$tmp/bench.json" <<'PY' || { echo "FAILED: bench --json profile: $(cat "$tmp/bench.json")"; failures=$((failures + 1)); }
import json, sys
row = json.loads(open(sys.argv[1]).read().splitlines()[-1])
train = row["fp32_train_profile"]
keys = {(r["phase"], r["op"]) for r in train}
assert {("forward", "conv2d"), ("backward-data", "conv2d"), ("backward-weights", "conv2d"),
        ("optimizer", "step")} <= keys, keys
assert all(r["ms"] >= 0 and r["calls"] >= 1 for r in train)
assert 0.5 < sum(r["share"] for r in train) <= 1.0001
assert any("gflops" in r and r["op"] == "conv2d" for r in row["fp32_infer_profile"])
assert any(r["op"].startswith("fake_quantize") for r in row["qat_train_profile"])
assert row["batch"] == 8 and row["infer_batch"] == 8, row
# int8 ops per image: 2 per multiply-add of jermmy's conv1 (40 of 3×3 over 26×26), grouped conv2
# (40 of 2×3×3 over 11×11) and fc (1000 -> 10); the fraction of the int8 peak is its GOP/s over
# the measured peak.
assert row["int8_ops_per_image"] == 2 * (40 * 9 * 26 * 26 + 40 * 2 * 9 * 11 * 11 + 1000 * 10), row
assert row["int8_peak_gops"] > 0, row
assert abs(row["int8_fraction_of_peak"] - row["int8_gops"] / row["int8_peak_gops"]) < 1e-9, row
PY
# The whole output first: grep -q would stop reading at the match, and under pipefail the bench
# writing its remaining rows into the closed pipe (SIGPIPE) failed the check now and then.
profile_table=$("$qforge" bench --model jermmy --seconds 0.01 --batch 8 --infer-batch 8 --profile 2>&1) ||
  { echo "FAILED: bench --profile exited non-zero"; failures=$((failures + 1)); }
grep -q "fp32 training step, per op:" <<<"$profile_table" ||
  { echo "FAILED: bench --profile prints no table"; failures=$((failures + 1)); }
((failures == 0)) && echo "cli: all checks passed"
exit $((failures > 0))
