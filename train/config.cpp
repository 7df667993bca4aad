#include "train/config.h"

#include <cmath>

#include "core/config_reader.h"
#include "core/file_io.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "nn/zoo.h"
#include "quant/qconfig.h"

namespace qforge::train {

namespace {

DataConfig parse_data(ConfigReader reader) {
  DataConfig d;
  d.dataset = reader.choice("dataset", d.dataset, {"fashion-mnist", "mnist-digits", "idx"});
  d.path = reader.string("path", d.dataset == "fashion-mnist"  ? data::kFashionMnistFolder
                                 : d.dataset == "mnist-digits" ? "datasets/mnist-digits"
                                                               : "");
  if (d.path.empty()) reader.fail("path", "required for dataset \"idx\"");
  ConfigReader normalize = reader.object("normalize");
  d.normalization.mean = static_cast<float>(normalize.number("mean", d.normalization.mean));
  d.normalization.stddev = static_cast<float>(normalize.number("std", d.normalization.stddev));
  // Pixels are in [0, 1]: a std below 1e-3 blows them up past any useful range (1e-30 gave inf).
  if (!(d.normalization.stddev >= 1e-3f)) normalize.fail("std", "expected a number >= 0.001");
  if (!std::isfinite(d.normalization.mean)) normalize.fail("mean", "expected a finite number");
  normalize.finish();
  ConfigReader augment = reader.object("augment");
  d.augmentation.crop_padding = augment.integer("crop_padding", 0, 0);
  if (d.augmentation.crop_padding > 64) augment.fail("crop_padding", "expected at most 64");
  d.augmentation.horizontal_flip = augment.boolean("horizontal_flip", false);
  augment.finish();
  d.train_limit = reader.integer("train_limit", 0, 0);
  d.test_limit = reader.integer("test_limit", 0, 0);
  reader.finish();
  return d;
}

ModelConfig parse_model(ConfigReader reader) {
  ModelConfig m;
  m.name = reader.string("name", "");
  m.layers = reader.raw("layers");
  if (m.name.empty() == m.layers.is_null())
    reader.fail("name", "give exactly one of \"name\" (a zoo model) or \"layers\"");
  if (!m.name.empty()) {
    const auto& names = nn::zoo_model_names();
    if (std::find(names.begin(), names.end(), m.name) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      reader.fail("name", "unknown zoo model \"" + m.name + "\" (known: " + known + ")");
    }
  }
  if (!m.layers.is_null() && (!m.layers.is_array() || m.layers.empty()))
    reader.fail("layers", "expected a non-empty array of layer objects");
  reader.finish();
  return m;
}

TrainConfig parse_train(ConfigReader reader) {
  TrainConfig t;
  t.epochs = reader.integer("epochs", t.epochs, 0);
  t.batch_size = reader.integer("batch_size", t.batch_size, 1);
  t.eval_batch_size = reader.integer("eval_batch_size", t.eval_batch_size, 1);
  t.seed = static_cast<uint64_t>(reader.integer("seed", 0, 0));
  t.threads = reader.integer("threads", 0, 0);
  if (t.threads > 1024) reader.fail("threads", "expected at most 1024, got " + std::to_string(t.threads));
  t.label_smoothing = reader.number("label_smoothing", 0.0);
  if (t.label_smoothing < 0 || t.label_smoothing > 1)
    reader.fail("label_smoothing", "expected a number in [0, 1]");
  t.sync_batchnorm = reader.boolean("sync_batchnorm", false);
  t.allreduce_bucket_mb = reader.number("allreduce_bucket_mb", t.allreduce_bucket_mb);
  if (!(t.allreduce_bucket_mb >= 1e-3 && t.allreduce_bucket_mb <= 4096))
    reader.fail("allreduce_bucket_mb", "expected a number of MiB in [0.001, 4096]");
  ConfigReader opt = reader.object("optimizer");
  OptimizerConfig& o = t.optimizer;
  o.type = opt.choice("type", o.type, {"sgd", "adam"});
  o.lr = opt.number("lr", o.type == "adam" ? 1e-3 : o.lr);
  if (o.lr <= 0) opt.fail("lr", "expected a positive number");
  o.weight_decay = opt.number("weight_decay", 0.0);
  if (o.weight_decay < 0) opt.fail("weight_decay", "expected a number >= 0");
  if (o.type == "sgd") {
    o.momentum = opt.number("momentum", o.momentum);
    if (o.momentum < 0 || o.momentum >= 1) opt.fail("momentum", "expected a number in [0, 1)");
    o.nesterov = opt.boolean("nesterov", false);
    if (o.nesterov && o.momentum <= 0) opt.fail("nesterov", "needs momentum > 0");
  } else {
    std::vector<double> betas = opt.numbers("betas", {o.beta1, o.beta2});
    if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
      opt.fail("betas", "expected two numbers in [0, 1)");
    o.beta1 = betas[0], o.beta2 = betas[1];
    o.eps = opt.number("eps", o.eps);
    if (!(o.eps > 0)) opt.fail("eps", "expected a positive number");
  }
  opt.finish();
  ConfigReader sched = reader.object("schedule");
  ScheduleConfig& s = t.schedule;
  s.type = sched.choice("type", s.type, {"none", "step", "cosine"});
  s.warmup_epochs = sched.number("warmup_epochs", 0.0);
  if (s.warmup_epochs < 0) sched.fail("warmup_epochs", "expected a number >= 0");
  if (s.type == "step") {
    s.step_size = sched.integer("step_size", 1, 1);
    s.gamma = sched.number("gamma", 0.1);
    if (!(s.gamma > 0)) sched.fail("gamma", "expected a positive number");
  }
  if (s.type == "cosine") s.min_lr = sched.number("min_lr", 0.0);
  if (s.min_lr < 0) sched.fail("min_lr", "expected a number >= 0");
  sched.finish();
  reader.finish();
  return t;
}

nn::ModulePtr build_layer(ConfigReader r, Generator& generator, int depth);

// A "layers" list inside a residual block: a Sequential of its layers.
nn::ModulePtr build_layers(ConfigReader& r, const std::string& key, Generator& generator, int depth) {
  const nlohmann::json& list = r.raw(key);
  if (!list.is_array() || list.empty()) r.fail(key, "expected a non-empty array of layer objects");
  auto layers = std::make_shared<nn::Sequential>();
  for (std::size_t i = 0; i < list.size(); ++i)
    layers->append(build_layer(ConfigReader(list[i], r.file(), r.key_path(key) + "." + std::to_string(i)),
                               generator, depth + 1));
  return layers;
}

// One layer object of a "layers" list, e.g. {"type": "conv2d", "in": 1, "out": 32, "kernel": 5, "padding":
// 2}, or a residual block {"type": "residual", "layers": [...], "shortcut": [...], "relu": true}:
// relu(layers(x) + shortcut(x)), the shortcut the identity when absent (nn::BasicBlock).
nn::ModulePtr build_layer(ConfigReader r, Generator& generator, int depth) {
  constexpr int kMaxDepth = 8;  // residual blocks inside residual blocks, this deep at most
  const std::string type = r.choice("type", "",
                                    {"conv2d", "linear", "batchnorm2d", "relu", "maxpool2d", "avgpool2d",
                                     "adaptive_avgpool2d", "flatten", "dropout", "residual"});
  nn::ModulePtr layer;
  // Sizes bounded so a config cannot ask for more memory than a machine has (a fuzzed
  // "linear" of 10^6 x 10^6 would be 4 TB of weights).
  auto bounded = [&](const char* key, int64_t fallback, int64_t min_value, int64_t max_value) {
    const int64_t value = r.integer(key, fallback, min_value);
    if (value > max_value)
      r.fail(key, "expected at most " + std::to_string(max_value) + ", got " + std::to_string(value));
    return value;
  };
  if (type == "conv2d") {
    int64_t in = bounded("in", 1, 1, 4096), out = bounded("out", 1, 1, 4096),
            kernel = bounded("kernel", 3, 1, 64);
    Conv2dOptions options =
        Conv2dOptions::square(bounded("stride", 1, 1, 4096), bounded("padding", 0, 0, 4096),
                              bounded("dilation", 1, 1, 4096), bounded("groups", 1, 1, 4096));
    layer = std::make_shared<nn::Conv2d>(in, out, kernel, options, r.boolean("bias", true), generator);
  } else if (type == "linear") {
    const int64_t in = bounded("in", 1, 1, 1 << 20), out = bounded("out", 1, 1, 1 << 20);
    if (in * out > (int64_t{1} << 26))
      r.fail("out", "a linear layer of at most 2^26 weights, got " + std::to_string(in * out));
    layer = std::make_shared<nn::Linear>(in, out, r.boolean("bias", true), generator);
  } else if (type == "batchnorm2d") {
    const int64_t channels = bounded("channels", 1, 1, 4096);
    const double eps = r.number("eps", 1e-5);
    if (!(eps > 0 && eps < 1)) r.fail("eps", "expected a number in (0, 1)");
    layer = std::make_shared<nn::BatchNorm2d>(channels, static_cast<float>(eps));
  } else if (type == "residual") {
    if (depth >= kMaxDepth)
      r.fail("type", "residual blocks nest at most " + std::to_string(kMaxDepth) + " deep");
    nn::ModulePtr residual = build_layers(r, "layers", generator, depth);
    nn::ModulePtr shortcut = r.has("shortcut") && !r.raw("shortcut").empty()
                                 ? build_layers(r, "shortcut", generator, depth)
                                 : nullptr;
    layer = std::make_shared<nn::BasicBlock>(residual, shortcut, r.boolean("relu", true));
  } else if (type == "relu") {
    layer = std::make_shared<nn::ReLU>();
  } else if (type == "maxpool2d" || type == "avgpool2d") {
    int64_t kernel = bounded("kernel", 2, 1, 4096);
    Pool2dOptions options =
        Pool2dOptions::square(kernel, bounded("stride", kernel, 1, 4096), bounded("padding", 0, 0, 4096));
    if (type == "maxpool2d")
      layer = std::make_shared<nn::MaxPool2d>(options);
    else
      layer = std::make_shared<nn::AvgPool2d>(options);
  } else if (type == "adaptive_avgpool2d") {
    int64_t size = bounded("size", 1, 1, 4096);
    layer = std::make_shared<nn::AdaptiveAvgPool2d>(size, size);
  } else if (type == "flatten") {
    layer = std::make_shared<nn::Flatten>();
  } else {
    double p = r.number("p", 0.5);
    if (p < 0 || p > 1) r.fail("p", "expected a probability in [0, 1]");
    layer = std::make_shared<nn::Dropout>(static_cast<float>(p), generator.next_u64());
  }
  r.finish();
  return layer;
}

}  // namespace

namespace {
// "adaround": true | false | {"iterations", "regularization", "beta": [start, end], "warm_start",
// "images", "batch", "lr"} (absent keys keep quant::AdaRoundOptions' defaults).
void parse_adaround(ConfigReader& ptq, PtqSettings& settings) {
  if (!ptq.has("adaround")) return;
  const nlohmann::json& value = ptq.raw("adaround");
  if (value.is_boolean()) {
    settings.adaround = value.get<bool>();
    return;
  }
  if (!value.is_object())
    ptq.fail("adaround",
             "expected true, false or an object {iterations, regularization, beta, warm_start, "
             "images, batch, lr}");
  ConfigReader reader = ptq.object("adaround");
  quant::AdaRoundOptions& o = settings.adaround_options;
  o.iterations = reader.integer("iterations", o.iterations, 1);
  o.regularization = reader.number("regularization", o.regularization);
  if (!(o.regularization >= 0)) reader.fail("regularization", "expected a number >= 0");
  const std::vector<double> beta = reader.numbers("beta", {o.beta_start, o.beta_end});
  if (beta.size() != 2 || !(beta[0] > 0) || !(beta[1] > 0))
    reader.fail("beta", "expected [start, end], two positive numbers");
  o.beta_start = beta[0];
  o.beta_end = beta[1];
  o.warm_start = reader.number("warm_start", o.warm_start);
  if (!(o.warm_start >= 0 && o.warm_start < 1)) reader.fail("warm_start", "expected a number in [0, 1)");
  o.images = reader.integer("images", o.images, 1);
  o.batch = reader.integer("batch", o.batch, 1);
  o.lr = reader.number("lr", o.lr);
  if (!(o.lr > 0)) reader.fail("lr", "expected a positive number");
  reader.finish();
  settings.adaround = true;
}
}  // namespace

QuantSection parse_quant_section(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "quant");
  QuantSection q;
  q.spec = quant::read_quant_spec(reader);
  ConfigReader qat = reader.object("qat");
  q.qat.epochs = qat.integer("epochs", 0, 0);
  q.qat.lr = qat.number("lr", 0.0);
  if (q.qat.lr < 0) qat.fail("lr", "expected a positive number");
  q.qat.freeze_observers_epoch = qat.integer("freeze_observers_epoch", -1, -1);
  q.qat.freeze_bn_epoch = qat.integer("freeze_bn_epoch", -1, -1);
  q.qat.calibration_batches = qat.integer("calibration_batches", 0, 0);
  if (q.qat.freeze_observers_epoch == 0 && q.qat.calibration_batches == 0)
    qat.fail(
        "freeze_observers_epoch",
        "0 freezes observers before they see any data; set quant.qat.calibration_batches to calibrate first");
  ConfigReader distillation = qat.object("distillation");
  q.qat.distillation_weight = distillation.number("weight", 0.0);
  if (q.qat.distillation_weight < 0 || q.qat.distillation_weight > 1)
    distillation.fail("weight", "expected a number in [0, 1]");
  q.qat.distillation_temperature = distillation.number("temperature", 4.0);
  if (!(q.qat.distillation_temperature > 0)) distillation.fail("temperature", "expected a positive number");
  distillation.finish();
  qat.finish();
  ConfigReader ptq = reader.object("ptq");
  q.ptq.calibration_batches = ptq.integer("calibration_batches", 32, 1);
  q.ptq.equalize = ptq.boolean("equalize", false);
  q.ptq.high_bias_absorption = ptq.boolean("high_bias_absorption", false);
  q.ptq.bias_correction = ptq.boolean("bias_correction", false);
  parse_adaround(ptq, q.ptq);
  ptq.finish();
  q.fp32_checkpoint = reader.string("fp32_checkpoint", "");
  reader.finish();
  return q;
}

RunConfig parse_config(const nlohmann::json& json, const std::string& file) {
  ConfigReader reader(json, file, "");
  RunConfig config;
  config.file = file;
  config.source = json;
  config.data = parse_data(reader.object("data"));
  config.model = parse_model(reader.object("model"));
  config.train = parse_train(reader.object("train"));
  ConfigReader output = reader.object("output");
  config.output_dir = output.string("dir", config.output_dir);
  output.finish();
  config.quant = parse_quant_section(reader.raw("quant"), file);
  config.sweep = parse_sweep_config(reader.raw("sweep"), file);
  config.calibrate_compare = parse_compare_config(reader.raw("calibrate_compare"), file);
  config.sensitivity = parse_sensitivity_config(reader.raw("sensitivity"), file);
  reader.finish();
  if (config.model.name.empty()) {  // validate the layer list now, not mid-run
    build_model(config, 0);
    if (config.data.dataset != "idx") check_layer_shapes(config, {1, 28, 28});  // 28x28 digits and fashion
  }
  return config;
}

namespace {
nlohmann::json spec_json(const quant::QuantizerSpec& q) {
  const quant::QuantScheme& s = q.scheme;
  return {{"bits", s.bits},
          {"signed", s.is_signed},
          {"symmetric", s.symmetric},
          {"per_channel", s.axis >= 0},
          {"reduce_range", s.reduce_range},
          {"narrow_range", s.narrow_range},
          {"observer", q.observer.to_string()},
          {"learnable", q.is_learnable}};
}

// "a.b.c: the file has X, the config has Y" for the first place two specs differ.
std::string first_difference(const nlohmann::json& saved, const nlohmann::json& current,
                             const std::string& path) {
  if (saved.is_object() && current.is_object()) {
    for (const auto& [key, value] : saved.items()) {
      const std::string where = path.empty() ? key : path + "." + key;
      if (!current.contains(key))
        return where + ": the file has " + value.dump() + ", the config has nothing";
      if (std::string d = first_difference(value, current[key], where); !d.empty()) return d;
    }
    for (const auto& [key, value] : current.items())
      if (!saved.contains(key))
        return (path.empty() ? key : path + "." + key) + ": the file has nothing, the config has " +
               value.dump();
    return "";
  }
  if (saved.is_array() && current.is_array() && saved.size() == current.size()) {
    for (std::size_t i = 0; i < saved.size(); ++i)
      if (std::string d = first_difference(saved[i], current[i], path + "." + std::to_string(i)); !d.empty())
        return d;
    return "";
  }
  return saved == current ? ""
                          : path + ": the file has " + saved.dump() + ", the config has " + current.dump();
}
}  // namespace

// Note [Saved spec]: a model file carries the model description and quantization spec it
// was built with, so `eval`, `convert` and `--resume` under a changed config (an 8-bit QAT
// model evaluated with --set quant.weight.bits=4 scored 10.5% instead of 72.3%) stop with
// the first difference instead of loading the weights into another model.
nlohmann::json model_spec(const RunConfig& config, bool with_quant) {
  nlohmann::json spec{{"model", config.source.value("model", nlohmann::json::object())}};
  if (!with_quant) return spec;
  const quant::QuantSpec& q = config.quant.spec;
  nlohmann::json overrides = nlohmann::json::array();
  for (const quant::QConfigOverride& o : q.overrides)
    overrides.push_back({{"name", o.name},
                         {"type", o.type},
                         {"float", o.qconfig.is_float},
                         {"weight", spec_json(o.qconfig.weight)},
                         {"activation", spec_json(o.qconfig.activation)}});
  spec["quant"] = {{"mode", q.mode},
                   {"weight", spec_json(q.defaults.weight)},
                   {"activation", spec_json(q.defaults.activation)},
                   {"overrides", overrides}};
  return spec;
}

void check_model_spec(const nlohmann::json& saved_metadata, const RunConfig& config, bool with_quant,
                      const std::string& file) {
  if (!saved_metadata.is_object() || !saved_metadata.contains("spec")) return;
  const nlohmann::json& saved = saved_metadata["spec"];
  const std::string difference =
      first_difference(saved, model_spec(config, with_quant && saved.contains("quant")), "");
  QF_CHECK(difference.empty(), file, ": saved with another model or quantization spec than ", config.file,
           " gives: ", difference);
}

void check_layer_shapes(const RunConfig& config, const Shape& sample_shape) {
  if (!config.model.name.empty()) return;  // zoo models are built for their input
  nn::ModulePtr model = build_model(config, 0);
  NoGradGuard no_grad;
  model->eval();
  Shape shape{1};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  Tensor x = Tensor::zeros(shape);
  const auto& layers = model->children();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    try {
      x = layers[i].second->forward(x);
    } catch (const Error& error) {
      QF_FAIL(config.file, ": model.layers.", i, " (", layers[i].second->type_name(), "): ", error.what(),
              " — the layers before it turn a ", shape_to_string(sample_shape), " image into ",
              shape_to_string(x.shape()));
    }
  }
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string text = read_file(path);
  QF_CHECK(text.size() <= kMaxConfigBytes, path, ": ", text.size(), " bytes; a config is at most ",
           kMaxConfigBytes, " bytes");
  nlohmann::json json = parse_json(text, path);
  for (const std::string& assignment : overrides) apply_override(json, assignment);
  return parse_config(json, path);
}

nn::ModulePtr build_model(const RunConfig& config, uint64_t seed) {
  Generator generator(seed);
  if (!config.model.name.empty()) return nn::build_zoo_model(config.model.name, generator);
  auto model = std::make_shared<nn::Sequential>();
  for (std::size_t i = 0; i < config.model.layers.size(); ++i)
    model->append(
        build_layer(ConfigReader(config.model.layers[i], config.file, "model.layers." + std::to_string(i)),
                    generator, 0));
  return model;
}

}  // namespace qforge::train
