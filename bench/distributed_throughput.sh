#!/usr/bin/env bash
# Data parallelism on this machine: training images/s of 2 ranks x 1 thread against 1 process
# x 2 threads, and what the gradient allreduce costs per step (docs/distributed.md). One
# sitting, the two alternating per net, ROUNDS rounds (never in CI: a benchmark runs alone).
#   bench/distributed_throughput.sh [QFORGE] [ROUNDS] [NETS...]     (default: build/apps/qforge 2, the zoo)
# Each run trains 16,384 Fashion-MNIST images for one epoch at batch 64 (configs/NET.json) and
# reads images_per_second and the allreduce fields from its metrics.jsonl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
qforge=${1:-$here/../build/apps/qforge} rounds=${2:-2}
shift $(($# < 2 ? $# : 2))
nets=("$@")
((${#nets[@]})) || nets=(jermmy lenet resnet8 resnet20)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
set_=(--set data.train_limit=16384 --set train.epochs=1 --set train.batch_size=64)
for round in $(seq "$rounds"); do
  for net in "${nets[@]}"; do
    config=$here/../configs/$net.json
    QFORGE_THREADS=2 "$qforge" train "$config" "${set_[@]}" --out "$dir/one" >/dev/null
    QFORGE_THREADS=1 mpirun -np 2 --bind-to core "$qforge" train "$config" "${set_[@]}" --out "$dir/two" >/dev/null
    echo "$net $(tail -n 1 "$dir/one/metrics.jsonl")" >> "$dir/one.jsonl"
    echo "$net $(tail -n 1 "$dir/two/metrics.jsonl")" >> "$dir/two.jsonl"
    rm -rf "$dir/one" "$dir/two"
  done
done
node - "$dir" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const rows = (name) => {
  const out = {};
  for (const line of fs.readFileSync(`${dir}/${name}.jsonl`, 'utf8').trim().split('\n')) {
    const at = line.indexOf(' ');
    (out[line.slice(0, at)] ||= []).push(JSON.parse(line.slice(at + 1)));
  }
  return out;
};
const one = rows('one'), two = rows('two');
const list = (records, key, digits) => records.map((r) => r[key].toFixed(digits)).join(', ');
console.log('net       1 x 2 threads img/s  2 x 1 thread img/s  ratio  buckets (started in backward)  ' +
            'allreduce after backward, ms/step  waiting for the other rank, ms/step');
for (const net of Object.keys(one)) {
  const sum = (records) => records.reduce((s, r) => s + r.images_per_second, 0);
  const last = two[net][two[net].length - 1];
  console.log(`${net.padEnd(9)} ${list(one[net], 'images_per_second', 0).padEnd(20)} ` +
              `${list(two[net], 'images_per_second', 0).padEnd(19)} ${(sum(two[net]) / sum(one[net])).toFixed(2)}x  ` +
              `${`${last.allreduce_buckets} (${last.buckets_started_in_backward_per_step.toFixed(1)})`.padEnd(30)} ` +
              `${list(two[net], 'allreduce_ms_per_step', 2).padEnd(34)} ${list(two[net], 'rank_wait_ms_per_step', 2)}`);
}
JS
