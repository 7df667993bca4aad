// Derivative table (per channel c over its M = N·H·W values; x̂ = (x-μ)·σ⁻¹, g = dL/dy):
//   dγ = Σ g·x̂          dβ = Σ g
//   training (μ, σ from the batch):
//     dx = γ·σ⁻¹/M · (M·g - Σg - x̂·Σ(g·x̂))
//   evaluation (μ, σ running, constants):
//     dx = γ·σ⁻¹·g
// channel_affine (y = x·a_c + b_c):  dx = g·a_c   da_c = Σ g·x   db_c = Σ g
//
// Note [Batch norm passes]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Training batch norm reads a channel's values several times: forward sums x, then (x − μ)²,
// then normalizes; backward sums g and g·x̂, then writes dx. In one process each thread
// takes whole channels and makes all of a channel's passes before the next channel, so
// the passes after the first read the channel from this core's cache: a channel of
// [64,16,28,28] is 200 KB, the whole tensor 3.2 MB, which the old order (each pass over
// every channel) read from memory every time. SyncBatchNorm (`across`) needs every
// channel's sums from every process between the passes and keeps that order. The
// arithmetic per value is the same either way.
#include "core/ops/norm.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/profiler.h"
#include "core/threading.h"

namespace qforge {

namespace {

// The per-channel sums of batch norm: Σ over channel c's M = N·S values of terms(i) (each
// of the K terms in double), kept in kLanes independent partial sums per term so the
// compiler vectorizes them; one running sum is a chain of dependent double adds, which was
// most of batch norm's time (Note [Op profile]). The result differs from one running sum
// only in double's last bits, far below the float it is rounded to.
constexpr int64_t kLanes = 8;
template <std::size_t K, typename Terms>
std::array<double, K> channel_sums(int64_t batch, int64_t channels, int64_t spatial, int64_t c, Terms terms) {
  std::array<std::array<double, kLanes>, K> lanes{};
  std::array<double, K> total{};
  for (int64_t n = 0; n < batch; ++n) {
    const int64_t base = (n * channels + c) * spatial;
    int64_t s = 0;
    for (; s + kLanes <= spatial; s += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) {
        const std::array<double, K> t = terms(base + s + j);
        for (std::size_t k = 0; k < K; ++k) lanes[k][j] += t[k];
      }
    for (; s < spatial; ++s) {
      const std::array<double, K> t = terms(base + s);
      for (std::size_t k = 0; k < K; ++k) total[k] += t[k];
    }
  }
  for (std::size_t k = 0; k < K; ++k)
    for (const double lane : lanes[k]) total[k] += lane;
  return total;
}

// Σ over one row of `count` values of terms(s) (K float terms), in kRowLanes independent
// float sums so the compiler vectorizes them: one running float sum is a chain of dependent
// adds it may not reorder (no -ffast-math), about 4 cycles a value.
constexpr int64_t kRowLanes = 16;
template <std::size_t K, typename Terms>
std::array<float, K> row_sums(int64_t count, Terms terms) {
  std::array<std::array<float, kRowLanes>, K> lanes{};
  std::array<float, K> total{};
  int64_t s = 0;
  for (; s + kRowLanes <= count; s += kRowLanes)
    for (int64_t j = 0; j < kRowLanes; ++j) {
      const std::array<float, K> t = terms(s + j);
      for (std::size_t k = 0; k < K; ++k) lanes[k][j] += t[k];
    }
  for (; s < count; ++s) {
    const std::array<float, K> t = terms(s);
    for (std::size_t k = 0; k < K; ++k) total[k] += t[k];
  }
  for (std::size_t k = 0; k < K; ++k)
    for (const float lane : lanes[k]) total[k] += lane;
  return total;
}

// v > 0 ? g : 0 (relu's backward rule), as a bit mask: GCC made the select a branch, which
// kept the loop scalar and mispredicted on every other value (7x slower).
inline float where_positive(float v, float g) {
  const uint32_t keep = 0u - static_cast<uint32_t>(v > 0.0f);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(g) & keep);
}

// What batch norm normalizes: x itself, or (affine_batch_norm) z = x·a_c + b_c computed as
// it is read, as channel_affine computes it.
struct Affine {
  const float* a = nullptr;  // null: no affine
  const float* b = nullptr;  // null: no shift
};

// batch_norm's backward (the table above), one channel per iteration:
//   out: dx (N,C,S), dgamma (C), dbeta (C), and with an affine da (C), db (C) — each
//        skipped when null (dx is then dL/dx = dL/dz·a_c; da = Σ dL/dz·x, db = Σ dL/dz)
//   in:  g (N,C,S) = dL/dy, x (N,C,S), the affine, gamma (C) or null (1), mean (C) = μ,
//        inverse_std (C) = σ⁻¹, both as the forward normalized with
template <bool kAffine, bool kRelu>
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, float* da, float* db, const float* g,
                         const float* x, Affine affine, const float* gamma, const float* beta,
                         const float* mean, const float* inverse_std, int64_t batch, int64_t channels,
                         int64_t spatial, bool is_training, const SumAcrossProcesses* across) {
  int64_t count = batch * spatial;  // M
  const bool needs_dz = dx || da || db;
  // With a ReLU after it, dL/dy is g where the normalized value y = z·scale_c + shift_c was
  // positive and 0 elsewhere (relu's own rule), y recomputed from x by the forward's float
  // operations.
  auto output_scale = [&](int64_t c) { return inverse_std[c] * (gamma ? gamma[c] : 1.0f); };
  auto output_shift = [&](int64_t c) { return (beta ? beta[c] : 0.0f) - mean[c] * output_scale(c); };
  // dL/dz of channel c from its sums Σg and Σ(g·ẑ) over `whole` values: into dx (times a_c
  // with an affine), and the affine's sums Σ dL/dz·x and Σ dL/dz (row_sums: per row in
  // float lanes, across rows in double, as channel_affine's backward sums them).
  auto channel_dz = [&](int64_t c, double sum_g, double sum_g_xhat, int64_t whole) {
    const float k = (gamma ? gamma[c] : 1.0f) * inverse_std[c];
    const float mean_g = static_cast<float>(sum_g / whole),
                mean_g_xhat = static_cast<float>(sum_g_xhat / whole);
    const float ac = kAffine ? affine.a[c] : 1.0f, bc = kAffine && affine.b ? affine.b[c] : 0.0f;
    const float mu = mean[c], inverse = inverse_std[c];  // locals: dx's stores could alias the arrays
    const float scale_c = output_scale(c), shift_c = output_shift(c);
    double sum_dz_x = 0, sum_dz = 0;
    for (int64_t n = 0; n < batch; ++n) {
      const float* grow = g + (n * channels + c) * spatial;
      const float* xrow = x + (n * channels + c) * spatial;
      float* out = dx ? dx + (n * channels + c) * spatial : nullptr;
      auto dz_at = [&](int64_t s) {
        const float z = kAffine ? xrow[s] * ac + bc : xrow[s];
        const float gs = kRelu ? where_positive(z * scale_c + shift_c, grow[s]) : grow[s];
        return is_training ? k * (gs - mean_g - (z - mu) * inverse * mean_g_xhat) : k * gs;
      };
      if constexpr (kAffine) {
        const auto [row_dz_x, row_dz] = row_sums<2>(spatial, [&](int64_t s) {
          const float dz = dz_at(s);
          if (out) out[s] = dz * ac;
          return std::array<float, 2>{dz * xrow[s], dz};
        });
        sum_dz_x += row_dz_x, sum_dz += row_dz;
      } else {
        for (int64_t s = 0; s < spatial; ++s) out[s] = dz_at(s);
      }
    }
    if (da) da[c] = static_cast<float>(sum_dz_x);
    if (db) db[c] = static_cast<float>(sum_dz);
  };
  // Σg and Σ(g·ẑ) per channel: [0, C) and [C, 2C). In one process each channel's dL/dz
  // follows its sums at once, while its values are still in this core's cache (Note [Batch
  // norm passes]); summed across processes, every channel's sums come first.
  const bool sums_first = across != nullptr && is_training;
  std::vector<double> sums(static_cast<std::size_t>(2 * channels));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    const float mu = mean[c], inverse = inverse_std[c];
    const float ac = kAffine ? affine.a[c] : 1.0f, bc = kAffine && affine.b ? affine.b[c] : 0.0f;
    const float scale_c = output_scale(c), shift_c = output_shift(c);
    // In double lanes. Per row in float lanes, across rows in double, was 2.5x faster, but it
    // changed resnet20's training enough that one ONNX export stopped agreeing with its
    // integer model in ONNX Runtime (the closing note of that stop): to be looked into first.
    const auto [sum_g, sum_g_xhat] = channel_sums<2>(batch, channels, spatial, c, [&](int64_t i) {
      const float z = kAffine ? x[i] * ac + bc : x[i];
      const float gi = kRelu ? where_positive(z * scale_c + shift_c, g[i]) : g[i];
      return std::array<double, 2>{gi, gi * (z - mu) * inverse};
    });
    if (dgamma) dgamma[c] = static_cast<float>(sum_g_xhat);  // this process's part
    if (dbeta) dbeta[c] = static_cast<float>(sum_g);
    sums[c] = sum_g, sums[channels + c] = sum_g_xhat;
    if (needs_dz && !sums_first) channel_dz(c, sum_g, sum_g_xhat, count);
  }
  if (!needs_dz || !sums_first) return;
  double total = static_cast<double>(count);  // the whole batch's sums and size
  across->sum(sums.data(), 2 * channels);
  across->sum(&total, 1);
  count = static_cast<int64_t>(total);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) channel_dz(c, sums[c], sums[channels + c], count);
}

// batch_norm, affine_batch_norm and batch_norm_relu: `scale` undefined without the affine;
// kRelu: the output is relu(y).
template <bool kAffine, bool kRelu>
Tensor batch_norm_of(const char* name, const Tensor& x, const Tensor& scale, const Tensor& shift,
                     Tensor& running_mean, Tensor& running_var, const Tensor& weight, const Tensor& bias,
                     bool is_training, float momentum, float eps, const SumAcrossProcesses* across) {
  QF_CHECK(x.dim() == 2 || x.dim() == 4, name, ": expected (N,C) or (N,C,H,W) input, got ", x.shape());
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t spatial = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  const int64_t count = batch * spatial;  // M
  const Shape channel_shape{channels};
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&running_mean, &running_var, &weight, &bias, &scale, &shift})
    QF_CHECK(!t->defined() || t->shape() == channel_shape, name, ": expected per-channel tensors of shape [",
             channels, "] for input ", x.shape(), ", got ", t->shape());
  QF_CHECK(running_mean.defined() && running_var.defined(), name, ": running statistics are required");
  QF_CHECK(!kAffine || scale.defined(), name, ": the scale is required");
  QF_CHECK(!is_training || count > 1 || across != nullptr, name,
           ": training needs more than one value per channel, got input ", x.shape());

  const ProfileScope profile("forward", name, [&] { return shape_to_string(x.shape()); });
  // Per-channel statistics used for normalization: μ and σ⁻¹.
  std::vector<float> mean(channels), inverse_std(channels);
  const float* px = x.data();
  const Affine affine{kAffine ? scale.data() : nullptr, kAffine && shift.defined() ? shift.data() : nullptr};
  // a_c and b_c (plain floats: clang 14 cannot capture a structured binding in a lambda)
  const auto affine_scale = [&](int64_t c) { return kAffine ? affine.a[c] : 1.0f; };
  const auto affine_shift = [&](int64_t c) { return kAffine && affine.b ? affine.b[c] : 0.0f; };
  Tensor y = Tensor::empty(x.shape());
  float* py = y.data();
  const float* gamma = weight.defined() ? weight.data() : nullptr;
  const float* beta = bias.defined() ? bias.data() : nullptr;
  auto normalize = [&](int64_t n, int64_t c) {
    const float scale_c = inverse_std[c] * (gamma ? gamma[c] : 1.0f);
    const float shift_c = (beta ? beta[c] : 0.0f) - mean[c] * scale_c;
    const float ac = affine_scale(c), bc = affine_shift(c);
    const float* row = px + (n * channels + c) * spatial;
    float* out = py + (n * channels + c) * spatial;
    for (int64_t s = 0; s < spatial; ++s) {
      const float z = kAffine ? row[s] * ac + bc : row[s];
      const float v = z * scale_c + shift_c;
      out[s] = kRelu ? relu_value(v) : v;
    }
  };
  if (is_training) {
    float* rm = running_mean.data();
    float* rv = running_var.data();
    // Two sums per channel (summed across processes for SyncBatchNorm): Σz gives μ, then
    // Σ(z − μ)² the variance; then the running statistics and, in one process, the
    // channel's normalized values while they are still in cache (Note [Batch norm passes]).
    std::vector<double> totals(static_cast<std::size_t>(channels)),
        squares(static_cast<std::size_t>(channels));
    auto channel_total = [&](int64_t c) {
      const float ac = affine_scale(c), bc = affine_shift(c);
      totals[c] = channel_sums<1>(batch, channels, spatial, c, [&](int64_t i) {
        return std::array<double, 1>{kAffine ? px[i] * ac + bc : px[i]};
      })[0];
    };
    auto channel_squares = [&](int64_t c, double whole) {
      const double mu = totals[c] / whole;
      const float ac = affine_scale(c), bc = affine_shift(c);
      squares[c] = channel_sums<1>(batch, channels, spatial, c, [&](int64_t i) {
        const float z = kAffine ? px[i] * ac + bc : px[i];
        return std::array<double, 1>{(z - mu) * (z - mu)};
      })[0];
    };
    auto channel_statistics = [&](int64_t c, double whole) {
      const double mu = totals[c] / whole, variance = squares[c] / whole;
      mean[c] = static_cast<float>(mu);
      inverse_std[c] = static_cast<float>(1.0 / std::sqrt(variance + eps));
      rm[c] = (1 - momentum) * rm[c] + momentum * static_cast<float>(mu);
      rv[c] = (1 - momentum) * rv[c] + momentum * static_cast<float>(squares[c] / (whole - 1));
    };
    if (across == nullptr) {
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < channels; ++c) {
        channel_total(c);
        channel_squares(c, static_cast<double>(count));
        channel_statistics(c, static_cast<double>(count));
        for (int64_t n = 0; n < batch; ++n) normalize(n, c);
      }
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < channels; ++c) channel_total(c);
      double whole = static_cast<double>(count);  // the whole batch's M
      across->sum(totals.data(), channels), across->sum(&whole, 1);
      QF_CHECK(whole > 1, name, ": training needs more than one value per channel, got input ", x.shape());
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < channels; ++c) channel_squares(c, whole);
      across->sum(squares.data(), channels);
      for (int64_t c = 0; c < channels; ++c) channel_statistics(c, whole);
    }
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      mean[c] = running_mean.data()[c];
      inverse_std[c] = 1.0f / std::sqrt(running_var.data()[c] + eps);
    }
  }
  if (!is_training || across != nullptr) {
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelGrain)
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t c = 0; c < channels; ++c) normalize(n, c);
  }
  if (!any_requires_grad({&x, &weight, &bias, &scale, &shift})) return y;

  // Saved for backward: x (N,C,S), the affine's scale and shift, gamma (C) or undefined,
  // mean and inverse_std (C).
  Tensor saved_x = x.detach(), saved_weight = weight.defined() ? weight.detach() : Tensor(),
         saved_bias = kRelu && bias.defined() ? bias.detach() : Tensor();
  Tensor saved_scale = scale.defined() ? scale.detach() : Tensor(),
         saved_shift = shift.defined() ? shift.detach() : Tensor();
  auto backward = [=](const Tensor& g, const Node& node) {
    auto gradient_of = [&](std::size_t input, const Shape& shape) {
      return input < node.inputs.size() && node.needs_grad(input) ? Tensor::empty(shape) : Tensor();
    };
    auto data_of = [](const Tensor& t) -> const float* { return t.defined() ? t.data() : nullptr; };
    auto out_of = [](Tensor& t) -> float* { return t.defined() ? t.data() : nullptr; };
    Tensor dx = gradient_of(0, saved_x.shape()), dgamma = gradient_of(1, {channels}),
           dbeta = gradient_of(2, {channels}), da = gradient_of(3, {channels}),
           db = gradient_of(4, {channels});
    batch_norm_backward<kAffine, kRelu>(
        out_of(dx), out_of(dgamma), out_of(dbeta), out_of(da), out_of(db), g.data(), saved_x.data(),
        Affine{data_of(saved_scale), data_of(saved_shift)}, data_of(saved_weight), data_of(saved_bias),
        mean.data(), inverse_std.data(), batch, channels, spatial, is_training, across);
    std::vector<Tensor> grads{dx, dgamma, dbeta};
    if (kAffine) grads.push_back(da), grads.push_back(db);
    return grads;
  };
  if (kAffine) return record(y, name, {x, weight, bias, scale, shift}, backward);
  return record(y, name, {x, weight, bias}, backward);
}

}  // namespace

Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool is_training, float momentum, float eps,
                  const SumAcrossProcesses* across) {
  return batch_norm_of<false, false>("batch_norm", x, Tensor(), Tensor(), running_mean, running_var, weight,
                                     bias, is_training, momentum, eps, across);
}

Tensor batch_norm_relu(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool is_training, float momentum, float eps,
                       const SumAcrossProcesses* across) {
  return batch_norm_of<false, true>("batch_norm_relu", x, Tensor(), Tensor(), running_mean, running_var,
                                    weight, bias, is_training, momentum, eps, across);
}

Tensor affine_batch_norm(const Tensor& x, const Tensor& scale, const Tensor& shift, Tensor& running_mean,
                         Tensor& running_var, const Tensor& weight, const Tensor& bias, bool is_training,
                         float momentum, float eps, const SumAcrossProcesses* across) {
  return batch_norm_of<true, false>("affine_batch_norm", x, scale, shift, running_mean, running_var, weight,
                                    bias, is_training, momentum, eps, across);
}

Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  QF_CHECK(x.dim() >= 2, "channel_affine: expected (N,C,...) input, got ", x.shape());
  const int64_t batch = x.size(0), channels = x.size(1), spatial = x.numel() / (batch * channels);
  QF_CHECK(scale.shape() == Shape{channels} && (!shift.defined() || shift.shape() == Shape{channels}),
           "channel_affine: expected scale and shift of shape [", channels, "], got ", scale.shape(), " and ",
           shift.shape());
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  const float* a = scale.data();
  const float* b = shift.defined() ? shift.data() : nullptr;
  float* py = y.data();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelGrain)
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (n * channels + c) * spatial;
      const float ac = a[c], bc = b ? b[c] : 0.0f;
      for (int64_t i = 0; i < spatial; ++i) py[base + i] = px[base + i] * ac + bc;
    }
  if (!any_requires_grad({&x, &scale, &shift})) return y;
  Tensor saved_x = x.detach(), saved_scale = scale.detach();
  return record(y, "channel_affine", {x, scale, shift}, [=](const Tensor& g, const Node& node) {
    Tensor dx = node.needs_grad(0) ? Tensor::empty(saved_x.shape()) : Tensor();
    Tensor da = Tensor::empty({channels}), db = Tensor::empty({channels});
    const float* pg = g.data();
    const float* px = saved_x.data();
    const float* a = saved_scale.data();
    float* pdx = dx.defined() ? dx.data() : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < channels; ++c) {
      double sum_gx = 0, sum_g = 0;
      for (int64_t n = 0; n < batch; ++n) {
        const int64_t base = (n * channels + c) * spatial;
        const auto [row_gx, row_g] = row_sums<2>(spatial, [&](int64_t i) {  // per row in float lanes
          return std::array<float, 2>{pg[base + i] * px[base + i], pg[base + i]};
        });
        sum_gx += row_gx, sum_g += row_g;  // across rows in double
        if (pdx)
          for (int64_t i = 0; i < spatial; ++i) pdx[base + i] = pg[base + i] * a[c];
      }
      da.data()[c] = static_cast<float>(sum_gx);
      db.data()[c] = static_cast<float>(sum_g);
    }
    return std::vector<Tensor>{dx, node.needs_grad(1) ? da : Tensor(), node.needs_grad(2) ? db : Tensor()};
  });
}

}  // namespace qforge
