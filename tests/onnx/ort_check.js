// Runs an ONNX model in ONNX Runtime (npm onnxruntime-node) on Fashion-MNIST test images and
// holds it to qforge's own results (ctest's onnx_runtime, tests/onnx/ort_agreement.sh):
//   node ort_check.js MODEL.onnx IMAGES.gz COUNT MEAN STD QFORGE_PREDICTIONS [options]
//     --min-identical F     fraction of identical predictions required (default 0.998)
//     --logits QFORGE.f32   also compare logits (qforge's, raw float32) within --tolerance (relative)
//     --tolerance T         default 1e-4
//     --optimized PATH      save ONNX Runtime's optimized graph there (qforge inspect counts its ops)
// Prints one JSON line; exits 1 when a requirement fails. ORT_DIR names the folder holding
// node_modules/onnxruntime-node (scripts/install-deps puts it in /opt/qforge/npm).
const fs = require('fs');
const zlib = require('zlib');
const ort = require((process.env.ORT_DIR || '/opt/qforge/npm') + '/node_modules/onnxruntime-node');

(async () => {
  const [model, images, count, mean, std, predictionsFile, ...rest] = process.argv.slice(2);
  const option = (name, fallback) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : fallback; };
  const minIdentical = +option('--min-identical', '0.998'), tolerance = +option('--tolerance', '1e-4');
  const logitsFile = option('--logits', ''), optimized = option('--optimized', '');
  // IDX images: magic, count, rows, cols (big-endian), then the pixels.
  const idx = zlib.gunzipSync(fs.readFileSync(images));
  const rows = idx.readUInt32BE(8), cols = idx.readUInt32BE(12), n = Math.min(+count, idx.readUInt32BE(4));
  const pixels = rows * cols;
  const options = { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all' };
  if (optimized) options.optimizedModelFilePath = optimized;
  const session = await ort.InferenceSession.create(model, options);
  const batch = 256, ours = fs.readFileSync(predictionsFile, 'utf8').trim().split('\n').map(Number);
  const theirs = [], logits = [];
  for (let start = 0; start < n; start += batch) {
    const size = Math.min(batch, n - start), x = new Float32Array(size * pixels);
    for (let i = 0; i < size * pixels; i++) x[i] = (idx[16 + start * pixels + i] / 255 - +mean) / +std;
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [size, 1, rows, cols]) });
    const y = out[session.outputNames[0]].data, classes = y.length / size;
    for (let i = 0; i < size; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
      theirs.push(best);
    }
    for (let i = 0; i < y.length; i++) logits.push(y[i]);
  }
  let same = 0;
  for (let i = 0; i < n; i++) same += ours[i] === theirs[i];
  const result = { model: model.split('/').pop(), images: n, identical: same / n, qforge_predictions: ours.length };
  let ok = ours.length === n && same / n >= minIdentical;
  if (logitsFile) {
    const b = fs.readFileSync(logitsFile), q = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    let worst = 0, scale = 0;
    for (let i = 0; i < logits.length; i++) scale = Math.max(scale, Math.abs(q[i]));
    for (let i = 0; i < logits.length; i++) worst = Math.max(worst, Math.abs(q[i] - logits[i]));
    result.max_logit_difference = worst;
    result.max_relative_logit_difference = worst / scale;
    ok = ok && q.length === logits.length && worst <= tolerance * scale;
  }
  console.log(JSON.stringify(result));
  process.exit(ok ? 0 : 1);
})().catch((error) => { console.error('ort_check: ' + error.message); process.exit(1); });
