// Deploy with ONNX Runtime: classify Fashion-MNIST test images with a model qforge exported
// (model_qat.onnx from `qforge qat`, or `qforge export`), and print its accuracy.
//   node examples/onnxruntime/classify.js MODEL.onnx [COUNT]
// ONNX Runtime comes from npm (onnxruntime-node; scripts/install-deps puts it in
// /opt/qforge/npm, or set ORT_DIR). The images are normalized as configs/lenet.json says
// (mean 0.2860, std 0.3530): the ONNX model starts where qforge's model starts.
const fs = require('fs');
const zlib = require('zlib');
const ort = require((process.env.ORT_DIR || '/opt/qforge/npm') + '/node_modules/onnxruntime-node');

const folder = '/usr/share/datasets/fashion-mnist';
const [modelPath, countArg] = process.argv.slice(2);
if (!modelPath) {
  console.error('usage: node classify.js MODEL.onnx [COUNT]');
  process.exit(2);
}

(async () => {
  const images = zlib.gunzipSync(fs.readFileSync(folder + '/t10k-images-idx3-ubyte.gz'));
  const labels = zlib.gunzipSync(fs.readFileSync(folder + '/t10k-labels-idx1-ubyte.gz'));
  const rows = images.readUInt32BE(8), cols = images.readUInt32BE(12);
  const n = Math.min(+(countArg || 10000), images.readUInt32BE(4)), pixels = rows * cols;
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2 });
  let correct = 0;
  const started = process.hrtime.bigint();
  for (let start = 0; start < n; start += 256) {
    const size = Math.min(256, n - start), x = new Float32Array(size * pixels);
    for (let i = 0; i < size * pixels; i++) x[i] = (images[16 + start * pixels + i] / 255 - 0.2860) / 0.3530;
    const input = new ort.Tensor('float32', x, [size, 1, rows, cols]);
    const y = (await session.run({ [session.inputNames[0]]: input }))[session.outputNames[0]].data;
    const classes = y.length / size;
    for (let i = 0; i < size; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
      correct += best === labels[8 + start + i];
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`${modelPath}: ONNX Runtime ${ort.env.versions.common}, test accuracy ` +
              `${(100 * correct / n).toFixed(2)}% on ${n} images, ${Math.round(n / seconds)} images/s`);
})().catch((error) => { console.error('classify: ' + error.message); process.exit(1); });
