// Cross-layer equalization: Note [Cross-layer equalization] (quant/equalize.h).
#include "quant/equalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::quant {

namespace {

// A conv or linear layer and the batch norm folded into it (when one follows it directly).
struct EqualizedLayer {
  std::string name;
  nn::Conv2d* conv = nullptr;
  nn::Linear* linear = nullptr;
  nn::BatchNorm2d* bn = nullptr;

  Tensor& weight() const { return conv ? conv->weight : linear->weight; }
  Tensor& bias() const { return conv ? conv->bias : linear->bias; }
  int64_t out_channels() const { return conv ? conv->out_channels : linear->out_features; }
  // |γ_o|/σ_o of the folded batch norm, 1 without one.
  float fold(int64_t o) const {
    if (!bn) return 1.0f;
    return std::fabs(bn->weight.data()[o]) / std::sqrt(bn->running_var.data()[o] + bn->eps);
  }
};

// first's output channels feed second's input channels; features_per_channel > 1 where a
// flatten turned each channel into that many features of a linear layer.
struct Pair {
  std::size_t first, second;  // into the layer list
  int64_t features_per_channel = 1;
  bool through_relu = false;  // a ReLU on the path between them
};

struct Graph {
  std::vector<EqualizedLayer> layers;
  std::vector<Pair> pairs;
};

bool is_homogeneous(const nn::Module& m) {
  const std::string type = m.type_name();
  return type == "ReLU" || type == "MaxPool2d" || type == "AvgPool2d" || type == "AdaptiveAvgPool2d" ||
         type == "Dropout" || type == "Identity";
}

void walk(nn::Module& module, const std::string& prefix, Graph& graph);

// A Sequential's children in order: a layer pairs with the last conv/linear whose output
// reaches it through homogeneous layers only.
void walk_sequential(nn::Sequential& sequential, const std::string& prefix, Graph& graph) {
  std::ptrdiff_t pending = -1;  // index of the layer whose output flows here, or -1
  bool flattened = false, adjacent = false, relu = false;
  for (const auto& [name, child] : sequential.children()) {
    const std::string full = nn::child_path(prefix, name);
    auto* conv = dynamic_cast<nn::Conv2d*>(child.get());
    auto* linear = dynamic_cast<nn::Linear*>(child.get());
    if (conv || linear) {
      const int64_t in = conv ? conv->in_channels : linear->in_features;
      if (pending >= 0) {
        const int64_t channels = graph.layers[static_cast<std::size_t>(pending)].out_channels();
        const bool from_conv = graph.layers[static_cast<std::size_t>(pending)].conv != nullptr;
        if (conv && from_conv && !flattened && in == channels)
          graph.pairs.push_back({static_cast<std::size_t>(pending), graph.layers.size(), 1, relu});
        else if (linear && (from_conv ? flattened && in % channels == 0 : in == channels))
          graph.pairs.push_back(
              {static_cast<std::size_t>(pending), graph.layers.size(), in / channels, relu});
      }
      graph.layers.push_back({full, conv, linear, nullptr});
      pending = static_cast<std::ptrdiff_t>(graph.layers.size()) - 1;
      flattened = false, relu = false;
      adjacent = true;
      continue;
    }
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(child.get())) {
      EqualizedLayer* owner = pending >= 0 ? &graph.layers[static_cast<std::size_t>(pending)] : nullptr;
      if (owner && adjacent && owner->conv && !owner->bn && bn->channels == owner->out_channels()) {
        owner->bn = bn;
      } else {
        pending = -1;  // a batch norm of its own is an affine map with a shift: not homogeneous
      }
      adjacent = false;
      continue;
    }
    adjacent = false;
    relu = relu || child->type_name() == "ReLU";
    if (child->type_name() == "Flatten") {
      flattened = true;
    } else if (!is_homogeneous(*child)) {
      pending = -1;  // a residual block, an LSTM, a nested container: the chain ends here
      walk(*child, full, graph);
    }
  }
}

void walk(nn::Module& module, const std::string& prefix, Graph& graph) {
  if (auto* sequential = dynamic_cast<nn::Sequential*>(&module)) {
    walk_sequential(*sequential, prefix, graph);
    return;
  }
  for (const auto& [name, child] : module.children()) walk(*child, nn::child_path(prefix, name), graph);
}

Graph graph_of(nn::Module& model) {
  for (const auto& [name, m] : model.named_modules())
    QF_CHECK(
        m->type_name() != "FakeQuantize", "equalize: ", name.empty() ? "the model" : name,
        " is prepared for quantization; cross-layer equalization runs on the float model before prepare");
  Graph graph;
  walk(model, "", graph);
  return graph;
}

// r1: the first layer's output channel ranges, its batch norm folded.
std::vector<float> output_ranges(const EqualizedLayer& layer) {
  const Tensor& w = layer.weight();
  const int64_t rows = layer.out_channels(), row = w.numel() / rows;
  std::vector<float> r(static_cast<std::size_t>(rows), 0.0f);
  for (int64_t o = 0; o < rows; ++o) {
    float m = 0;
    for (int64_t k = 0; k < row; ++k) m = std::max(m, std::fabs(w.data()[o * row + k]));
    r[static_cast<std::size_t>(o)] = m * layer.fold(o);
  }
  return r;
}

// Visits every weight of `layer` that reads input channel c: f(output channel, flat index).
template <typename F>
void for_input_channel(const EqualizedLayer& layer, int64_t c, int64_t features_per_channel, F&& f) {
  if (layer.linear) {
    const int64_t in = layer.linear->in_features;
    for (int64_t o = 0; o < layer.linear->out_features; ++o)
      for (int64_t j = c * features_per_channel; j < (c + 1) * features_per_channel; ++j) f(o, o * in + j);
    return;
  }
  const nn::Conv2d& conv = *layer.conv;
  const int64_t groups = conv.options.groups, in_per_group = conv.in_channels / groups;
  const int64_t out_per_group = conv.out_channels / groups,
                taps = conv.weight.numel() / (conv.out_channels * in_per_group);
  const int64_t group = c / in_per_group, local = c % in_per_group;
  for (int64_t o = group * out_per_group; o < (group + 1) * out_per_group; ++o)
    for (int64_t t = 0; t < taps; ++t) f(o, (o * in_per_group + local) * taps + t);
}

// r2: the second layer's input channel ranges (its own batch norm folded).
std::vector<float> input_ranges(const EqualizedLayer& layer, int64_t channels, int64_t features_per_channel) {
  std::vector<float> r(static_cast<std::size_t>(channels), 0.0f);
  const float* w = layer.weight().data();
  for (int64_t c = 0; c < channels; ++c) {
    float m = 0;
    for_input_channel(layer, c, features_per_channel,
                      [&](int64_t o, int64_t k) { m = std::max(m, std::fabs(w[k]) * layer.fold(o)); });
    r[static_cast<std::size_t>(c)] = m;
  }
  return r;
}

// Output channel c of the first layer divided by s, input channel c of the second times s.
void rescale(const EqualizedLayer& first, const EqualizedLayer& second, int64_t c,
             int64_t features_per_channel, float s) {
  if (first.bn) {
    first.bn->weight.data()[c] /= s;
    first.bn->bias.data()[c] /= s;
  } else {
    Tensor& w = first.weight();
    const int64_t row = w.numel() / first.out_channels();
    for (int64_t k = 0; k < row; ++k) w.data()[c * row + k] /= s;
    if (first.bias().defined()) first.bias().data()[c] /= s;
  }
  float* w = second.weight().data();
  for_input_channel(second, c, features_per_channel, [&](int64_t, int64_t k) { w[k] *= s; });
}

}  // namespace

EqualizeReport equalize(nn::Module& model) {
  const Graph graph = graph_of(model);
  EqualizeReport report;
  for (const Pair& p : graph.pairs)
    report.pairs.push_back({graph.layers[p.first].name, graph.layers[p.second].name});
  if (graph.pairs.empty()) return report;
  constexpr int kMaxSweeps = 100;
  constexpr double kTolerance = 1e-4;
  do {
    report.largest_change = 0;
    for (const Pair& p : graph.pairs) {
      const EqualizedLayer &first = graph.layers[p.first], &second = graph.layers[p.second];
      const std::vector<float> r1 = output_ranges(first);
      const std::vector<float> r2 =
          input_ranges(second, static_cast<int64_t>(r1.size()), p.features_per_channel);
      for (std::size_t c = 0; c < r1.size(); ++c) {
        if (!(r1[c] > 0) || !(r2[c] > 0)) continue;  // a dead channel keeps s = 1
        const float s = std::sqrt(r1[c] / r2[c]);
        QF_CHECK(std::isfinite(s), "equalize: ", first.name, " -> ", second.name, ": channel ", c,
                 " has ranges ", r1[c], " and ", r2[c]);
        rescale(first, second, static_cast<int64_t>(c), p.features_per_channel, s);
        report.largest_change = std::max(report.largest_change, std::fabs(static_cast<double>(s) - 1.0));
      }
    }
    ++report.sweeps;
  } while (report.largest_change > kTolerance && report.sweeps < kMaxSweeps);
  return report;
}

HighBiasReport absorb_high_bias(nn::Module& model) {
  const Graph graph = graph_of(model);
  HighBiasReport report;
  for (const Pair& p : graph.pairs) {
    const EqualizedLayer &first = graph.layers[p.first], &second = graph.layers[p.second];
    // Statistics to bound the pre-activation with, a ReLU to gain from, somewhere to put K.
    if (!first.bn || !p.through_relu || (!second.bn && !second.bias().defined())) continue;
    AbsorbedPair absorbed{first.name, second.name, 0, 0};
    const int64_t channels = first.out_channels();
    std::vector<double> shift(static_cast<std::size_t>(second.out_channels()), 0.0);
    for (int64_t c = 0; c < channels; ++c) {
      const float gamma = first.bn->weight.data()[c], beta = first.bn->bias.data()[c];
      const float amount = std::max(0.0f, beta - 3 * std::fabs(gamma));
      if (!(amount > 0)) continue;
      first.bn->bias.data()[c] -= amount;
      const float* w = second.weight().data();
      for_input_channel(second, c, p.features_per_channel, [&](int64_t o, int64_t k) {
        shift[static_cast<std::size_t>(o)] += double{w[k]} * amount;
      });
      ++absorbed.channels;
      absorbed.largest = std::max(absorbed.largest, amount);
    }
    if (absorbed.channels == 0) continue;
    // The second layer sees its input lowered by c: W·(a − c) + b + W·c. With a batch norm
    // and no bias, the same constant moves its running mean the other way.
    for (int64_t o = 0; o < second.out_channels(); ++o) {
      const auto k = static_cast<float>(shift[static_cast<std::size_t>(o)]);
      if (second.bias().defined())
        second.bias().data()[o] += k;
      else
        second.bn->running_mean.data()[o] -= k;
    }
    report.pairs.push_back(absorbed);
  }
  return report;
}

std::vector<PairRanges> pair_ranges(nn::Module& model) {
  const Graph graph = graph_of(model);
  std::vector<PairRanges> out;
  for (const Pair& p : graph.pairs) {
    const EqualizedLayer &first = graph.layers[p.first], &second = graph.layers[p.second];
    PairRanges r{output_ranges(first), {}};
    r.second = input_ranges(second, static_cast<int64_t>(r.first.size()), p.features_per_channel);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace qforge::quant
