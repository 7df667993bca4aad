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
#include <cmath>
#include <vector>

#include "core/autograd.h"
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

// batch_norm's backward (the table above), one channel per iteration:
//   out: dx (N,C,S), dgamma (C), dbeta (C) — each skipped when null
//   in:  g (N,C,S) = dL/dy, x (N,C,S), gamma (C) or null (1), mean (C) = μ,
//        inverse_std (C) = σ⁻¹, both as the forward normalized with
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* g, const float* x,
                         const float* gamma, const float* mean, const float* inverse_std, int64_t batch,
                         int64_t channels, int64_t spatial, bool is_training,
                         const SumAcrossProcesses* across) {
  int64_t count = batch * spatial;  // M
  // dx of channel c from its sums Σg and Σ(g·x̂) over `whole` values.
  auto channel_dx = [&](int64_t c, double sum_g, double sum_g_xhat, int64_t whole) {
    const float k = (gamma ? gamma[c] : 1.0f) * inverse_std[c];
    const float mean_g = static_cast<float>(sum_g / whole),
                mean_g_xhat = static_cast<float>(sum_g_xhat / whole);
    for (int64_t n = 0; n < batch; ++n) {
      const float* grow = g + (n * channels + c) * spatial;
      const float* xrow = x + (n * channels + c) * spatial;
      float* out = dx + (n * channels + c) * spatial;
      if (is_training)
        for (int64_t s = 0; s < spatial; ++s) {
          const float xhat = (xrow[s] - mean[c]) * inverse_std[c];
          out[s] = k * (grow[s] - mean_g - xhat * mean_g_xhat);
        }
      else
        for (int64_t s = 0; s < spatial; ++s) out[s] = k * grow[s];
    }
  };
  // Σg and Σ(g·x̂) per channel: [0, C) and [C, 2C). In one process each channel's dx follows
  // its sums at once, while its values are still in this core's cache (Note [Batch norm
  // passes]); summed across processes, every channel's sums come first.
  const bool sums_first = across != nullptr && is_training;
  std::vector<double> sums(static_cast<std::size_t>(2 * channels));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    const float mu = mean[c], inverse = inverse_std[c];
    const auto [sum_g, sum_g_xhat] = channel_sums<2>(batch, channels, spatial, c, [&](int64_t i) {
      return std::array<double, 2>{g[i], g[i] * (x[i] - mu) * inverse};
    });
    if (dgamma) dgamma[c] = static_cast<float>(sum_g_xhat);  // this process's part
    if (dbeta) dbeta[c] = static_cast<float>(sum_g);
    sums[c] = sum_g, sums[channels + c] = sum_g_xhat;
    if (dx && !sums_first) channel_dx(c, sum_g, sum_g_xhat, count);
  }
  if (!dx || !sums_first) return;
  double total = static_cast<double>(count);  // the whole batch's sums and size
  across->sum(sums.data(), 2 * channels);
  across->sum(&total, 1);
  count = static_cast<int64_t>(total);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) channel_dx(c, sums[c], sums[channels + c], count);
}

}  // namespace

Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool is_training, float momentum, float eps,
                  const SumAcrossProcesses* across) {
  QF_CHECK(x.dim() == 2 || x.dim() == 4, "batch_norm: expected (N,C) or (N,C,H,W) input, got ", x.shape());
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t spatial = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  const int64_t count = batch * spatial;  // M
  const Shape channel_shape{channels};
  for (const Tensor* t : std::initializer_list<const Tensor*>{&running_mean, &running_var, &weight, &bias})
    QF_CHECK(!t->defined() || t->shape() == channel_shape,
             "batch_norm: expected per-channel tensors of shape [", channels, "] for input ", x.shape(),
             ", got ", t->shape());
  QF_CHECK(running_mean.defined() && running_var.defined(), "batch_norm: running statistics are required");
  QF_CHECK(!is_training || count > 1 || across != nullptr,
           "batch_norm: training needs more than one value per channel, got input ", x.shape());

  const ProfileScope profile("forward", "batch_norm", [&] { return shape_to_string(x.shape()); });
  // Per-channel statistics used for normalization: μ and σ⁻¹.
  std::vector<float> mean(channels), inverse_std(channels);
  const float* px = x.data();
  Tensor y = Tensor::empty(x.shape());
  float* py = y.data();
  const float* gamma = weight.defined() ? weight.data() : nullptr;
  const float* beta = bias.defined() ? bias.data() : nullptr;
  auto normalize = [&](int64_t n, int64_t c) {
    const float scale = inverse_std[c] * (gamma ? gamma[c] : 1.0f);
    const float shift = (beta ? beta[c] : 0.0f) - mean[c] * scale;
    const float* row = px + (n * channels + c) * spatial;
    float* out = py + (n * channels + c) * spatial;
    for (int64_t s = 0; s < spatial; ++s) out[s] = row[s] * scale + shift;
  };
  if (is_training) {
    float* rm = running_mean.data();
    float* rv = running_var.data();
    // Two sums per channel (summed across processes for SyncBatchNorm): Σx gives μ, then
    // Σ(x − μ)² the variance; then the running statistics and, in one process, the
    // channel's normalized values while they are still in cache (Note [Batch norm passes]).
    std::vector<double> totals(static_cast<std::size_t>(channels)),
        squares(static_cast<std::size_t>(channels));
    auto channel_total = [&](int64_t c) {
      totals[c] = channel_sums<1>(batch, channels, spatial, c,
                                  [&](int64_t i) { return std::array<double, 1>{px[i]}; })[0];
    };
    auto channel_squares = [&](int64_t c, double whole) {
      const double mu = totals[c] / whole;
      squares[c] = channel_sums<1>(batch, channels, spatial, c, [&](int64_t i) {
        return std::array<double, 1>{(px[i] - mu) * (px[i] - mu)};
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
      QF_CHECK(whole > 1, "batch_norm: training needs more than one value per channel, got input ",
               x.shape());
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
  if (!any_requires_grad({&x, &weight, &bias})) return y;

  // Saved for backward: x (N,C,S), gamma (C) or undefined, mean and inverse_std (C).
  Tensor saved_x = x.detach(), saved_weight = weight.defined() ? weight.detach() : Tensor();
  return record(y, "batch_norm", {x, weight, bias}, [=](const Tensor& g, const Node& node) {
    Tensor dx = node.needs_grad(0) ? Tensor::empty(saved_x.shape()) : Tensor();
    Tensor dgamma = node.needs_grad(1) ? Tensor::empty({channels}) : Tensor();
    Tensor dbeta = node.needs_grad(2) ? Tensor::empty({channels}) : Tensor();
    batch_norm_backward(dx.defined() ? dx.data() : nullptr, dgamma.defined() ? dgamma.data() : nullptr,
                        dbeta.defined() ? dbeta.data() : nullptr, g.data(), saved_x.data(),
                        saved_weight.defined() ? saved_weight.data() : nullptr, mean.data(),
                        inverse_std.data(), batch, channels, spatial, is_training, across);
    return std::vector<Tensor>{dx, dgamma, dbeta};
  });
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
        float row_gx = 0, row_g = 0;  // per row in float (vectorizes), across rows in double
        for (int64_t i = 0; i < spatial; ++i) {
          row_gx += pg[base + i] * px[base + i];
          row_g += pg[base + i];
        }
        sum_gx += row_gx, sum_g += row_g;
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
