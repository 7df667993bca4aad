#!/usr/bin/env bash
# qforge's runtimes beside ONNX Runtime on the very same models, one sitting, alternating, 2 threads,
# batch 256 and batch 1 (never in CI: a benchmark runs alone on the machine).
#   bench/ort_side_by_side.sh [QFORGE] [ROUNDS]      (ORT_DIR: onnxruntime-node, default /opt/qforge/npm)
# Each round, per net: `qforge bench --onnx DIR` times qforge (fp32 and int8) on a zoo model with
# QAT-calibrated int8 and writes those models as ONNX; ../shared/peer/ort/ort_bench.js (the peer's
# own timer) then times ONNX Runtime on qforge's exports: the fp32 model, and the QDQ int8 model
# (the LSTM: its dynamic int8 model, DynamicQuantizeLSTM). Prints the best of the rounds for each:
# the highest images/s at batch 256, the lowest ms at batch 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
qforge=${1:-$here/../build/apps/qforge} rounds=${2:-2}
export ORT_DIR=${ORT_DIR:-/opt/qforge/npm}
timer=$here/../../shared/peer/ort/ort_bench.js
[[ -f $timer ]] || timer=/work/shared/peer/ort/ort_bench.js
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for round in $(seq "$rounds"); do
  for net in jermmy lenet resnet8 resnet20 lstm; do
    "$qforge" bench --model "$net" --threads 2 --seconds 3 --json --onnx "$dir" 2>/dev/null | tail -1 > "$dir/$net.$round.qforge"
    node "$timer" "$dir/${net}_fp32.onnx" 2 256 30 2>/dev/null | tail -1 > "$dir/$net.$round.ort_fp32"
    node "$timer" "$dir/${net}_int8.onnx" 2 256 30 2>/dev/null | tail -1 > "$dir/$net.$round.ort_int8"
    node "$timer" "$dir/${net}_fp32.onnx" 2 1 1000 2>/dev/null | tail -1 > "$dir/$net.$round.ort_fp32_b1"
    node "$timer" "$dir/${net}_int8.onnx" 2 1 1000 2>/dev/null | tail -1 > "$dir/$net.$round.ort_int8_b1"
  done
done
node - "$dir" "$rounds" <<'JS'
const fs = require('fs');
const [dir, rounds] = process.argv.slice(2);
const read = (net, kind, key) => Array.from({ length: +rounds }, (_, r) => {
  const text = fs.readFileSync(`${dir}/${net}.${r + 1}.${kind}`, 'utf8').trim();
  return text ? (JSON.parse(text)[key] || 0) : 0;
});
const best = (net, kind, key) => Math.max(...read(net, kind, key));  // images/s: the highest
const fastest = (net, kind, key) => Math.min(...read(net, kind, key).filter(v => v > 0));  // ms: the lowest
const cell = (a, b) => `${Math.round(a)} / ${Math.round(b)} = ${(a / b).toFixed(2)}x`.padEnd(30);
// Latency: qforge's ms / ONNX Runtime's ms, and the speed ratio (ONNX Runtime's ms over qforge's).
const latency = (a, b) => `${a.toFixed(3)} / ${b.toFixed(3)} ms = ${(b / a).toFixed(2)}x`.padEnd(30);
const int8_key = net => net === 'lstm' ? 'int8_dynamic_infer_images_per_second' : 'int8_infer_images_per_second';
console.log('Batch 256, images/s, qforge / ONNX Runtime (same exported model); ratio > 1: qforge is faster');
console.log('net       fp32                           int8');
for (const net of ['jermmy', 'lenet', 'resnet8', 'resnet20', 'lstm']) {
  const qf = best(net, 'qforge', 'fp32_infer_images_per_second'), of = best(net, 'ort_fp32', 'img_s');
  const qi = best(net, 'qforge', int8_key(net)), oi = best(net, 'ort_int8', 'img_s');
  console.log(`${net.padEnd(9)} ${cell(qf, of)} ${cell(qi, oi)}${net === 'lstm' ? ' (dynamic int8)' : ''}`);
}
console.log('Batch 1, ms per image, qforge / ONNX Runtime; ratio > 1: qforge is faster');
console.log('net       fp32                           int8');
for (const net of ['jermmy', 'lenet', 'resnet8', 'resnet20', 'lstm']) {
  // ONNX Runtime's ms from its images/s (its ms_per_batch has two decimals).
  const qf = fastest(net, 'qforge', 'fp32_latency_ms'), of = 1000 / best(net, 'ort_fp32_b1', 'img_s');
  const qi = fastest(net, 'qforge', net === 'lstm' ? 'int8_dynamic_latency_ms' : 'int8_latency_ms');
  const oi = 1000 / best(net, 'ort_int8_b1', 'img_s');
  console.log(`${net.padEnd(9)} ${latency(qf, of)} ${latency(qi, oi)}${net === 'lstm' ? ' (dynamic int8)' : ''}`);
}
JS
