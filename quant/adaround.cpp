// AdaRound: Note [AdaRound] (quant/adaround.h).
#include "quant/adaround.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "core/autograd.h"
#include "core/error.h"
#include "core/kernels/gemm.h"
#include "core/threading.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/bn_folding.h"
#include "quant/fake_quantize_module.h"
#include "quant/qat_modules.h"
#include "quant/quant_params.h"

namespace qforge::quant {

float rectified_sigmoid(float v) {
  const float sigma = 1.0f / (1.0f + std::exp(-v));
  return std::clamp(sigma * (kAdaRoundZeta - kAdaRoundGamma) + kAdaRoundGamma, 0.0f, 1.0f);
}

float rectified_sigmoid_inverse(float h) {
  // σ(V) = (h − γ)/(ζ − γ) lies in (0, 1) for every h in [0, 1]: γ < 0 and ζ > 1.
  const float sigma = (h - kAdaRoundGamma) / (kAdaRoundZeta - kAdaRoundGamma);
  return std::log(sigma / (1 - sigma));
}

float rounding_regularizer(float h, double beta) {
  return static_cast<float>(1 - std::pow(std::fabs(2.0 * h - 1), beta));
}

namespace {
int64_t warm_iterations(const AdaRoundOptions& options) {
  return static_cast<int64_t>(options.warm_start * static_cast<double>(options.iterations));
}
}  // namespace

bool is_regularized(const AdaRoundOptions& options, int64_t iteration) {
  return iteration >= warm_iterations(options);
}

double annealed_beta(const AdaRoundOptions& options, int64_t iteration) {
  const int64_t warm = warm_iterations(options);
  if (iteration < warm) return options.beta_start;
  const double progress = static_cast<double>(iteration - warm) /
                          static_cast<double>(std::max<int64_t>(1, options.iterations - warm));
  return options.beta_end + (options.beta_start - options.beta_end) * std::max(0.0, 1 - progress);
}

namespace {

// One layer to round: its weights as a matrix (out channels × K per group), and how an input
// becomes im2col rows (one row per image and output position, K columns per group).
struct RoundedLayer {
  std::string name;
  QatConv2d* conv = nullptr;
  QatLinear* linear = nullptr;
  FakeQuantize* quantizer = nullptr;

  Tensor& stored_weight() const { return conv ? conv->conv->weight : linear->linear->weight; }
  std::function<void(const Tensor&)>& probe() const { return conv ? conv->input_probe : linear->input_probe; }
  bool has_relu() const { return conv ? conv->has_relu : linear->has_relu; }
  int64_t out_channels() const { return conv ? conv->conv->out_channels : linear->linear->out_features; }
  int64_t groups() const { return conv ? conv->conv->options.groups : 1; }
  int64_t k() const { return stored_weight().numel() / out_channels(); }  // per group
  // The weights the quantizer rounds (batch norm folded) and the float bias (zeros if none).
  std::pair<Tensor, Tensor> float_weight_and_bias() const {
    auto [weight, bias] = conv ? conv->folded_weight_and_bias()
                               : std::pair<Tensor, Tensor>{linear->linear->weight, linear->linear->bias};
    if (!bias.defined()) bias = Tensor::zeros({out_channels()});
    return {weight.detach().clone(), bias.detach().clone()};
  }
};

// The first `limit` images a layer sees in one pass of the calibration images, concatenated.
struct Inputs {
  std::vector<float> values;
  Shape image_shape;  // (C, H, W) or (F)
  int64_t images = 0;
  int64_t image_size() const { return values.size() / std::max<int64_t>(1, images); }
};

Inputs collect_inputs(const RoundedLayer& layer, const std::function<void()>& run_images, int64_t limit) {
  Inputs inputs;
  with_input_probe(
      layer.probe(),
      [&](const Tensor& x) {
        if (inputs.images >= limit) return;
        QF_CHECK(x.dim() == 4 || (x.dim() == 2 && layer.linear), "adaround: ", layer.name,
                 ": expected a (N,C,H,W) or (N,F) input, got ", x.shape());
        const Shape shape(x.shape().begin() + 1, x.shape().end());
        QF_CHECK(inputs.images == 0 || shape == inputs.image_shape, "adaround: ", layer.name,
                 ": the calibration inputs change shape (", inputs.image_shape, " then ", shape, ")");
        inputs.image_shape = shape;
        const int64_t take = std::min(limit - inputs.images, x.size(0)), size = x.numel() / x.size(0);
        inputs.values.insert(inputs.values.end(), x.data(), x.data() + take * size);
        inputs.images += take;
      },
      run_images);
  QF_CHECK(inputs.images > 0, "adaround: ", layer.name, ": no calibration images reached the layer");
  return inputs;
}

// Output positions per image of a conv (1 for a linear layer).
int64_t positions(const RoundedLayer& layer, const Shape& image_shape, int64_t* out_height = nullptr,
                  int64_t* out_width = nullptr) {
  if (!layer.conv) return 1;
  const Conv2dOptions& o = layer.conv->conv->options;
  const int64_t kernel = layer.conv->conv->kernel_size;
  const int64_t oh = (image_shape[1] + 2 * o.padding_height - o.dilation_height * (kernel - 1) - 1) /
                         o.stride_height +
                     1,
                ow = (image_shape[2] + 2 * o.padding_width - o.dilation_width * (kernel - 1) - 1) /
                         o.stride_width +
                     1;
  if (out_height) *out_height = oh;
  if (out_width) *out_width = ow;
  return oh * ow;
}

// The im2col rows of images [first, first + count) of `inputs` for group g: (count·P) × K,
// columns in the weight's (channel, kernel row, kernel column) order.
void im2col(const RoundedLayer& layer, const Inputs& inputs, int64_t first, int64_t count, int64_t g,
            float* out) {
  const int64_t k = layer.k(), size = inputs.image_size();
  if (!layer.conv) {
    std::copy_n(inputs.values.data() + first * size, count * size, out);
    return;
  }
  int64_t oh = 0, ow = 0;
  const int64_t p = positions(layer, inputs.image_shape, &oh, &ow);
  const Conv2dOptions& o = layer.conv->conv->options;
  const int64_t kernel = layer.conv->conv->kernel_size, height = inputs.image_shape[1],
                width = inputs.image_shape[2], channels = inputs.image_shape[0] / layer.groups();
#pragma omp parallel for schedule(static) if (count * p * k >= kParallelGrain)
  for (int64_t n = 0; n < count; ++n) {
    const float* image = inputs.values.data() + (first + n) * size + g * channels * height * width;
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        float* row = out + ((n * oh + y) * ow + x) * k;
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t ky = 0; ky < kernel; ++ky)
            for (int64_t kx = 0; kx < kernel; ++kx) {
              const int64_t iy = y * o.stride_height - o.padding_height + ky * o.dilation_height,
                            ix = x * o.stride_width - o.padding_width + kx * o.dilation_width;
              *row++ = iy >= 0 && iy < height && ix >= 0 && ix < width ? image[(c * height + iy) * width + ix]
                                                                       : 0.0f;
            }
      }
  }
}

// The layer's cached problem: the quantized inputs as im2col rows per group, the float targets.
struct Problem {
  int64_t images = 0, positions = 0, rows = 0, groups = 1, k = 0, out_channels = 0;
  std::vector<float> columns;  // groups × rows × k
  std::vector<float> targets;  // rows × out_channels
  const float* block(int64_t g, int64_t first_image) const {
    return columns.data() + (g * rows + first_image * positions) * k;
  }
};

// y = f(X·Wᵀ + b) for rows [first image, + count) into out (count·P × out channels).
void layer_output(const RoundedLayer& layer, const Problem& problem, const float* const* columns,
                  int64_t count, const float* weight, const float* bias, float* out) {
  const int64_t m = count * problem.positions, per_group = problem.out_channels / problem.groups;
  for (int64_t g = 0; g < problem.groups; ++g)
    kernels::gemm(false, true, m, per_group, problem.k, 1.0f, columns[g], problem.k,
                  weight + g * per_group * problem.k, problem.k, 0.0f, out + g * per_group,
                  problem.out_channels);
  const bool relu = layer.has_relu();
  const int64_t total = m * problem.out_channels;
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
  for (int64_t i = 0; i < total; ++i) {
    const float y = out[i] + bias[i % problem.out_channels];
    out[i] = relu && y < 0 ? 0.0f : y;
  }
}

Problem build_problem(const RoundedLayer& layer, const Inputs& quantized, const Inputs& floating,
                      const Tensor& weight, const Tensor& bias) {
  Problem problem;
  problem.images = std::min(quantized.images, floating.images);
  problem.positions = positions(layer, quantized.image_shape);
  problem.rows = problem.images * problem.positions;
  problem.groups = layer.groups();
  problem.k = layer.k();
  problem.out_channels = layer.out_channels();
  problem.columns.resize(static_cast<std::size_t>(problem.groups * problem.rows * problem.k));
  for (int64_t g = 0; g < problem.groups; ++g)
    im2col(layer, quantized, 0, problem.images, g, problem.columns.data() + g * problem.rows * problem.k);
  // Targets from the float inputs in chunks: their im2col rows are needed only here.
  problem.targets.resize(static_cast<std::size_t>(problem.rows * problem.out_channels));
  constexpr int64_t kChunk = 64;
  std::vector<float> scratch(
      static_cast<std::size_t>(problem.groups * kChunk * problem.positions * problem.k));
  for (int64_t first = 0; first < problem.images; first += kChunk) {
    const int64_t count = std::min(kChunk, problem.images - first);
    std::vector<const float*> columns;
    for (int64_t g = 0; g < problem.groups; ++g) {
      float* out = scratch.data() + g * kChunk * problem.positions * problem.k;
      im2col(layer, floating, first, count, g, out);
      columns.push_back(out);
    }
    layer_output(layer, problem, columns.data(), count, weight.data(), bias.data(),
                 problem.targets.data() + first * problem.positions * problem.out_channels);
  }
  return problem;
}

// Σ over channels of the squared error, averaged over images and positions, over the whole cache.
double reconstruction_loss(const RoundedLayer& layer, const Problem& problem, const float* weight,
                           const float* bias) {
  constexpr int64_t kChunk = 64;
  std::vector<float> out(static_cast<std::size_t>(kChunk * problem.positions * problem.out_channels));
  double total = 0;
  for (int64_t first = 0; first < problem.images; first += kChunk) {
    const int64_t count = std::min(kChunk, problem.images - first);
    std::vector<const float*> columns;
    for (int64_t g = 0; g < problem.groups; ++g) columns.push_back(problem.block(g, first));
    layer_output(layer, problem, columns.data(), count, weight, bias, out.data());
    const float* target = problem.targets.data() + first * problem.positions * problem.out_channels;
    const int64_t n = count * problem.positions * problem.out_channels;
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(out[i] - target[i]) * (out[i] - target[i]);
  }
  return total / static_cast<double>(problem.rows);
}

// The grid of one weight: s, z and ⌊W/s⌋, as fake quantization computes W/s (W · (1/s)).
struct Grid {
  std::vector<float> scale, zero_point, floor;
  float lo = 0, hi = 0;
  int64_t k = 0;
  float scale_of(int64_t i) const {
    return scale.size() == 1 ? scale[0] : scale[static_cast<std::size_t>(i / k)];
  }
  float zero_of(int64_t i) const {
    return zero_point.size() == 1 ? zero_point[0] : zero_point[static_cast<std::size_t>(i / k)];
  }
  float level(int64_t i, float h) const {
    return clamp_level(floor[static_cast<std::size_t>(i)] + h + zero_of(i), lo, hi);
  }
};

Grid grid_of(const RoundedLayer& layer, const Tensor& weight) {
  const QuantParams p = layer.quantizer->qparams();
  const QuantRange range = layer.quantizer->spec().scheme.range();
  Grid grid;
  grid.k = weight.numel() / layer.out_channels();
  grid.scale = p.scale;
  for (int64_t z : p.zero_point) grid.zero_point.push_back(static_cast<float>(z));
  QF_CHECK(grid.scale.size() == 1 || static_cast<int64_t>(grid.scale.size()) == layer.out_channels(),
           "adaround: ", layer.name, ": ", grid.scale.size(), " weight scales for ", layer.out_channels(),
           " output channels (AdaRound rounds per-tensor or per-output-channel weights)");
  grid.lo = static_cast<float>(range.quant_min);
  grid.hi = static_cast<float>(range.quant_max);
  grid.floor.resize(static_cast<std::size_t>(weight.numel()));
  for (int64_t i = 0; i < weight.numel(); ++i) {
    const float s = grid.scale_of(i);
    QF_CHECK(s > 0 && std::isfinite(s), "adaround: ", layer.name, ": weight scale ", s, " (calibrate first)");
    grid.floor[static_cast<std::size_t>(i)] = std::floor(weight.data()[i] * (1.0f / s));
  }
  return grid;
}

// Adam on V (Kingma & Ba), its moments and step count.
struct Adam {
  std::vector<float> m, v;
  int64_t step = 0;
  double lr;
  explicit Adam(std::size_t n, double lr_) : m(n, 0.0f), v(n, 0.0f), lr(lr_) {}
  void update(std::vector<float>& x, const std::vector<float>& gradient) {
    constexpr float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    ++step;
    const float c1 = 1.0f - std::pow(b1, static_cast<float>(step)),
                c2 = 1.0f - std::pow(b2, static_cast<float>(step)), rate = static_cast<float>(lr);
    const int64_t n = static_cast<int64_t>(x.size());
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * gradient[i];
      v[i] = b2 * v[i] + (1 - b2) * gradient[i] * gradient[i];
      x[i] -= rate * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }
  }
};

// The learned levels of one layer (hard rounding at the end).
std::vector<float> learn_levels(const RoundedLayer& layer, const Problem& problem, const Grid& grid,
                                const Tensor& weight, const Tensor& bias, const AdaRoundOptions& options,
                                uint64_t seed) {
  const int64_t n = weight.numel(), batch = std::min(options.batch, problem.images);
  const int64_t per_group = problem.out_channels / problem.groups, m = batch * problem.positions;
  std::vector<float> v(static_cast<std::size_t>(n)), soft(static_cast<std::size_t>(n)),
      slope(static_cast<std::size_t>(n)), gradient(static_cast<std::size_t>(n)),
      weight_gradient(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(m * problem.out_channels));
  for (int64_t i = 0; i < n; ++i) {  // start at nearest rounding's soft equivalent: h(V) = W/s − ⌊W/s⌋
    const float rest = weight.data()[i] * (1.0f / grid.scale_of(i)) - grid.floor[static_cast<std::size_t>(i)];
    v[static_cast<std::size_t>(i)] = rectified_sigmoid_inverse(std::clamp(rest, 0.0f, 1.0f));
  }
  Adam adam(v.size(), options.lr);
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<int64_t> start_of(0, problem.images - batch);
  const float* b = bias.data();
  for (int64_t iteration = 0; iteration < options.iterations; ++iteration) {
    const bool regularized = is_regularized(options, iteration);
    const float beta = static_cast<float>(annealed_beta(options, iteration)),
                lambda = static_cast<float>(options.regularization);
    // W̃ = s·(level − z) and dW̃/dV = s·dh/dV where the level is not clamped (h's own clip included).
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const float sigma = 1.0f / (1.0f + std::exp(-v[i]));
      const float raw = sigma * (kAdaRoundZeta - kAdaRoundGamma) + kAdaRoundGamma;
      const float h = std::clamp(raw, 0.0f, 1.0f);
      const float unclamped = grid.floor[i] + h + grid.zero_of(i),
                  level = clamp_level(unclamped, grid.lo, grid.hi);
      const float s = grid.scale_of(i);
      soft[i] = s * (level - grid.zero_of(i));
      const float dh =
          raw > 0.0f && raw < 1.0f ? sigma * (1 - sigma) * (kAdaRoundZeta - kAdaRoundGamma) : 0.0f;
      slope[i] = dh;
      // The regularizer's gradient: d/dh (1 − |2h − 1|^β) = −2β·|2h − 1|^(β−1)·sign(2h − 1).
      float regularizer = 0;
      if (regularized) {
        const float d = 2 * h - 1;
        regularizer = -2 * beta * std::pow(std::fabs(d), beta - 1) * (d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f);
      }
      gradient[i] = lambda * regularizer * dh;
      if (unclamped < grid.lo || unclamped > grid.hi) slope[i] = 0;  // clamped: W̃ does not move
      slope[i] *= s;
    }
    const int64_t first = start_of(generator);
    std::vector<const float*> columns;
    for (int64_t g = 0; g < problem.groups; ++g) columns.push_back(problem.block(g, first));
    layer_output(layer, problem, columns.data(), batch, soft.data(), b, out.data());
    // dL/dy = 2(y − t)/rows, zero where the ReLU cut y to 0.
    const float* target = problem.targets.data() + first * problem.positions * problem.out_channels;
    const int64_t total = m * problem.out_channels;
    const float factor = 2.0f / static_cast<float>(m);
    const bool relu = layer.has_relu();
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
    for (int64_t i = 0; i < total; ++i)
      out[i] = relu && out[i] <= 0.0f ? 0.0f : factor * (out[i] - target[i]);
    for (int64_t g = 0; g < problem.groups; ++g)
      kernels::gemm(true, false, per_group, problem.k, m, 1.0f, out.data() + g * per_group,
                    problem.out_channels, columns[static_cast<std::size_t>(g)], problem.k, 0.0f,
                    weight_gradient.data() + g * per_group * problem.k, problem.k);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) gradient[i] += weight_gradient[i] * slope[i];
    adam.update(v, gradient);
  }
  std::vector<float> levels(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float h = rectified_sigmoid(v[static_cast<std::size_t>(i)]);
    QF_CHECK(std::isfinite(h), "adaround: ", layer.name, ": the rounding variables diverged");
    levels[static_cast<std::size_t>(i)] = grid.level(i, h >= 0.5f ? 1.0f : 0.0f);
  }
  return levels;
}

// The prepared model as the float model: every quantizer off, and the layers rounded so far
// with their original weights back; restored when it goes out of scope.
class FloatModel {
 public:
  FloatModel(nn::Module& model, const std::vector<RoundedLayer>& layers, std::vector<Tensor>& originals)
      : layers_(layers), originals_(originals) {
    for (const auto& [name, module] : model.named_modules())
      if (auto* quantizer = dynamic_cast<FakeQuantize*>(module)) {
        states_.emplace_back(quantizer, quantizer->is_fake_quantizing());
        quantizer->enable_fake_quant(false);
      }
    swap();
  }
  ~FloatModel() {
    swap();
    for (auto& [quantizer, state] : states_) quantizer->enable_fake_quant(state);
  }
  FloatModel(const FloatModel&) = delete;
  FloatModel& operator=(const FloatModel&) = delete;

 private:
  void swap() {
    for (std::size_t i = 0; i < originals_.size(); ++i) {
      Tensor& weight = layers_[i].stored_weight();
      std::swap_ranges(weight.data(), weight.data() + weight.numel(), originals_[i].data());
    }
  }
  const std::vector<RoundedLayer>& layers_;
  std::vector<Tensor>& originals_;
  std::vector<std::pair<FakeQuantize*, bool>> states_;
};

// Writes the levels into the model as weights on the grid, s·(q − z), unfolded where a batch
// norm folds in (a channel the batch norm zeroes keeps its weights: they fold to 0 anyway).
void store(const RoundedLayer& layer, const Grid& grid, const std::vector<float>& levels) {
  Tensor& weight = layer.stored_weight();
  std::vector<float> factor;
  if (layer.conv && layer.conv->bn) factor = bn_folding_factor(*layer.conv->bn).to_vector();
  for (int64_t i = 0; i < weight.numel(); ++i) {
    const float value = grid.scale_of(i) * (levels[static_cast<std::size_t>(i)] - grid.zero_of(i));
    if (factor.empty()) {
      weight.data()[i] = value;
    } else {
      const float f = factor[static_cast<std::size_t>(i / grid.k)];
      if (f != 0.0f) weight.data()[i] = value / f;
    }
  }
}

}  // namespace

AdaRoundReport adaround(nn::Module& model, const AdaRoundOptions& options,
                        const std::function<void()>& run_images,
                        const std::function<void(const AdaRoundedLayer&)>& on_layer) {
  QF_CHECK(options.iterations >= 1 && options.images >= 1 && options.batch >= 1 && options.lr > 0,
           "adaround: iterations, images, batch and lr must be positive");
  AdaRoundReport report;
  std::vector<RoundedLayer> layers;
  for (const auto& [name, module] : model.named_modules()) {
    RoundedLayer layer{.name = name};
    if (auto* conv = dynamic_cast<QatConv2d*>(module)) {
      layer.conv = conv;
      layer.quantizer = conv->weight_quant.get();
    } else if (auto* linear = dynamic_cast<QatLinear*>(module)) {
      layer.linear = linear;
      layer.quantizer = linear->weight_quant.get();
    } else {
      continue;
    }
    if (!layer.quantizer) continue;  // kept in float: nothing rounds
    if (layer.quantizer->spec().scheme.binary) {
      report.skipped.push_back(name);  // a sign has no rounding to choose
      continue;
    }
    layers.push_back(layer);
  }
  NoGradGuard no_grad;
  std::vector<Tensor> originals;  // the float weights of the layers rounded so far
  for (std::size_t index = 0; index < layers.size(); ++index) {
    const RoundedLayer& layer = layers[index];
    const auto start = std::chrono::steady_clock::now();
    const Inputs quantized = collect_inputs(layer, run_images, options.images);
    Inputs floating;
    {
      FloatModel float_model(model, layers, originals);
      floating = collect_inputs(layer, run_images, options.images);
    }
    QF_CHECK(floating.images == quantized.images && floating.image_shape == quantized.image_shape,
             "adaround: ", layer.name, ": the calibration passes differ (", quantized.images, " then ",
             floating.images, " images); run_images must forward the same images every time");
    const auto [weight, bias] = layer.float_weight_and_bias();
    const Problem problem = build_problem(layer, quantized, floating, weight, bias);
    const Grid grid = grid_of(layer, weight);
    AdaRoundedLayer done{.name = layer.name, .weights = weight.numel()};
    std::vector<float> nearest(static_cast<std::size_t>(weight.numel())), rounded(nearest.size());
    for (int64_t i = 0; i < weight.numel(); ++i) {
      const float s = grid.scale_of(i);
      const float level =
          clamp_level(quantize_unclamped(weight.data()[i], 1.0f / s, grid.zero_of(i)), grid.lo, grid.hi);
      nearest[static_cast<std::size_t>(i)] = level;
    }
    auto dequantized = [&rounded, &grid](const std::vector<float>& levels) {
      for (std::size_t i = 0; i < levels.size(); ++i)
        rounded[i] =
            grid.scale_of(static_cast<int64_t>(i)) * (levels[i] - grid.zero_of(static_cast<int64_t>(i)));
      return rounded.data();
    };
    done.loss_nearest = reconstruction_loss(layer, problem, dequantized(nearest), bias.data());
    const std::vector<float> levels =
        learn_levels(layer, problem, grid, weight, bias, options, options.seed + index);
    done.loss_adaround = reconstruction_loss(layer, problem, dequantized(levels), bias.data());
    for (std::size_t i = 0; i < levels.size(); ++i) done.changed += levels[i] != nearest[i];
    originals.push_back(layer.stored_weight().clone());
    store(layer, grid, levels);
    done.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.layers.push_back(done);
    if (on_layer) on_layer(done);
  }
  return report;
}

}  // namespace qforge::quant
