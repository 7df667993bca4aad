// Runs every QDQ ONNX model the generated agreement test exported (tests/train/test_agreement.cpp,
// OnnxExports: one per configuration it converted) in ONNX Runtime, on the same real test images,
// and holds each to the integer model's predictions (ctest onnx_runtime):
//   node ort_manifest.js FOLDER [MIN_IDENTICAL] [IMAGES]
// MIN_IDENTICAL: default 0.99, the agreement test's own bar; IMAGES: only the first IMAGES of
// each model's test images (default all; ONNX Runtime's time is in the runs, not the sessions).
// FOLDER/manifest.jsonl lists {label, model, inputs (raw float32), shape, predictions}. Prints
// one line per model below 100% and a summary; exits 1 if any model falls short or none ran.
const fs = require('fs');
const path = require('path');
const ort = require((process.env.ORT_DIR || '/opt/qforge/npm') + '/node_modules/onnxruntime-node');

(async () => {
  const [folder, minArg, imagesArg] = process.argv.slice(2);
  const minIdentical = +(minArg || 0.99), imageLimit = imagesArg ? +imagesArg : Infinity;
  const lines = fs.readFileSync(path.join(folder, 'manifest.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
  const inputs = new Map();
  let failed = 0, lowest = 1, lowestLabel = '', perfect = 0;
  for (const line of lines) {
    const entry = JSON.parse(line);
    if (!inputs.has(entry.inputs)) {
      const b = fs.readFileSync(path.join(folder, entry.inputs));
      inputs.set(entry.inputs, new Float32Array(b.buffer, b.byteOffset, b.length / 4));
    }
    const x = inputs.get(entry.inputs), [all, ...sample] = entry.shape, n = Math.min(all, imageLimit);
    const per = sample.reduce((a, b) => a * b, 1);
    const ours = fs.readFileSync(path.join(folder, entry.predictions), 'utf8').trim().split('\n').map(Number);
    const session = await ort.InferenceSession.create(path.join(folder, entry.model),
                                                      { intraOpNumThreads: 2, graphOptimizationLevel: 'all',
                                                        enableCpuMemArena: false });  // 226 sessions: a quarter faster
    let same = 0;
    for (let start = 0; start < n; start += 300) {
      const size = Math.min(300, n - start);
      const input = new ort.Tensor('float32', x.subarray(start * per, (start + size) * per), [size, ...sample]);
      const y = (await session.run({ [session.inputNames[0]]: input }))[session.outputNames[0]].data;
      const classes = y.length / size;
      for (let i = 0; i < size; i++) {
        let best = 0;
        for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
        same += best === ours[start + i];
      }
    }
    const identical = same / n;
    if (identical === 1) perfect++;
    else console.log(`${entry.label}: ${(100 * identical).toFixed(2)}% identical (${n - same} of ${n} images differ)`);
    if (identical < lowest) lowest = identical, lowestLabel = entry.label;
    if (!(identical >= minIdentical) || ours.length !== all) failed++;
  }
  console.log(`ort_manifest: ${lines.length} exported configurations run in ONNX Runtime ${ort.env.versions.common}: ` +
              `${perfect} identical on every image, ${failed} below ${100 * minIdentical}%; lowest ` +
              `${(100 * lowest).toFixed(2)}%${lowestLabel ? ' (' + lowestLabel + ')' : ''}`);
  process.exit(failed || lines.length === 0 ? 1 : 0);
})().catch((error) => { console.error('ort_manifest: ' + error.message); process.exit(1); });
