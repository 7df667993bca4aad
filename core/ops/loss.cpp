// Derivative table (g = dL/dy):
//   log_softmax      dx = g - softmax(x)·Σg            (over the axis)
//   cross_entropy    dlogits = g·(softmax(logits) - q)/N,  q = (1-ε)·onehot(t) + ε/C
//   mse_loss         dp = g·2(p-t)/n,  dt = -dp
//   distillation     ds = g·T·(softmax(s/T) - softmax(t/T))/N
#include "core/ops/loss.h"

#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/ops/reduce.h"
#include "core/profiler.h"

namespace qforge {

namespace {
// out[k·stride] = log_softmax over `extent` strided values, stable (max subtracted).
void log_softmax_row(float* out, const float* in, int64_t extent, int64_t stride) {
  float peak = in[0];
  for (int64_t k = 1; k < extent; ++k) peak = std::fmax(peak, in[k * stride]);
  double total = 0;
  for (int64_t k = 0; k < extent; ++k) total += std::exp(static_cast<double>(in[k * stride] - peak));
  float log_total = static_cast<float>(std::log(total)) + peak;
  for (int64_t k = 0; k < extent; ++k) out[k * stride] = in[k * stride] - log_total;
}
}  // namespace

Tensor log_softmax(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.dim(), "log_softmax");
  const ProfileScope profile("forward", "log_softmax");
  AxisSplit s = split_at_axis(x.shape(), axis);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i)
      log_softmax_row(y.data() + o * s.extent * s.inner + i, x.data() + o * s.extent * s.inner + i, s.extent,
                      s.inner);
  if (!any_requires_grad({&x})) return y;
  Tensor saved_y = y.detach();
  return record(y, "log_softmax", {x}, [saved_y, s](const Tensor& g, const Node&) {
    Tensor dx = Tensor::empty(saved_y.shape());
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        int64_t base = o * s.extent * s.inner + i;
        float total = 0;
        for (int64_t k = 0; k < s.extent; ++k) total += g.data()[base + k * s.inner];
        for (int64_t k = 0; k < s.extent; ++k) {
          int64_t at = base + k * s.inner;
          dx.data()[at] = g.data()[at] - std::exp(saved_y.data()[at]) * total;
        }
      }
    return std::vector<Tensor>{dx};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, float label_smoothing) {
  QF_CHECK(logits.dim() == 2, "cross_entropy: expected logits (N,C), got ", logits.shape());
  QF_CHECK(targets.dtype() == DType::s32 && targets.shape() == Shape{logits.size(0)},
           "cross_entropy: expected s32 targets of shape [", logits.size(0), "], got ",
           dtype_name(targets.dtype()), " ", targets.shape());
  QF_CHECK(label_smoothing >= 0.0f && label_smoothing <= 1.0f,
           "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t batch = logits.size(0), classes = logits.size(1);
  QF_CHECK(batch > 0, "cross_entropy: empty batch");
  const int32_t* t = targets.data_as<int32_t>();
  for (int64_t n = 0; n < batch; ++n)
    QF_CHECK(t[n] >= 0 && t[n] < classes, "cross_entropy: target ", t[n], " of sample ", n,
             " is outside [0, ", classes, ")");
  const ProfileScope profile("forward", "cross_entropy");
  Tensor log_probabilities = Tensor::empty(logits.shape());  // (N,C)
  double total = 0;
  const float off_weight = label_smoothing / classes, on_weight = 1.0f - label_smoothing + off_weight;
  for (int64_t n = 0; n < batch; ++n) {
    float* row = log_probabilities.data() + n * classes;
    log_softmax_row(row, logits.data() + n * classes, classes, 1);
    double row_loss = 0;
    for (int64_t c = 0; c < classes; ++c) row_loss -= (c == t[n] ? on_weight : off_weight) * row[c];
    total += row_loss;
  }
  Tensor loss = Tensor::scalar(static_cast<float>(total / batch));
  if (!any_requires_grad({&logits})) return loss;
  Tensor saved_targets = targets.clone();
  return record(loss, "cross_entropy", {logits}, [=](const Tensor& g, const Node&) {
    Tensor dx = Tensor::empty(log_probabilities.shape());
    const float scale = g.item() / batch;
    const int32_t* t = saved_targets.data_as<int32_t>();
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t c = 0; c < classes; ++c) {
        int64_t at = n * classes + c;
        float q = c == t[n] ? on_weight : off_weight;
        dx.data()[at] = scale * (std::exp(log_probabilities.data()[at]) - q);
      }
    return std::vector<Tensor>{dx};
  });
}

Tensor mse_loss(const Tensor& prediction, const Tensor& target) {
  QF_CHECK(prediction.shape() == target.shape(), "mse_loss: prediction ", prediction.shape(), " and target ",
           target.shape(), " differ");
  const int64_t n = prediction.numel();
  QF_CHECK(n > 0, "mse_loss: empty tensors");
  Tensor difference = Tensor::empty(prediction.shape());  // p - t
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    float d = prediction.data()[i] - target.data()[i];
    difference.data()[i] = d;
    total += static_cast<double>(d) * d;
  }
  Tensor loss = Tensor::scalar(static_cast<float>(total / n));
  return record(loss, "mse_loss", {prediction, target}, [difference, n](const Tensor& g, const Node& node) {
    Tensor dp = Tensor::empty(difference.shape());
    const float scale = 2.0f * g.item() / n;
    for (int64_t i = 0; i < n; ++i) dp.data()[i] = scale * difference.data()[i];
    Tensor dt;
    if (node.needs_grad(1)) {
      dt = dp.clone();
      for (int64_t i = 0; i < n; ++i) dt.data()[i] = -dt.data()[i];
    }
    return std::vector<Tensor>{node.needs_grad(0) ? dp : Tensor(), dt};
  });
}

Tensor distillation_loss(const Tensor& student, const Tensor& teacher, float temperature) {
  QF_CHECK(student.dim() == 2 && teacher.shape() == student.shape(),
           "distillation_loss: expected student and teacher logits of one shape (N,C), got ", student.shape(),
           " and ", teacher.shape());
  QF_CHECK(temperature > 0 && std::isfinite(temperature), "distillation_loss: temperature must be > 0, got ",
           temperature);
  const int64_t batch = student.size(0), classes = student.size(1);
  QF_CHECK(batch > 0, "distillation_loss: empty batch");
  // Both log-softmaxes at temperature T, row by row.
  Tensor log_p = Tensor::empty(student.shape()), log_q = Tensor::empty(student.shape());  // teacher, student
  std::vector<float> scaled(classes);
  double total = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const int64_t base = n * classes;
    for (int64_t c = 0; c < classes; ++c) scaled[c] = teacher.data()[base + c] / temperature;
    log_softmax_row(log_p.data() + base, scaled.data(), classes, 1);
    for (int64_t c = 0; c < classes; ++c) scaled[c] = student.data()[base + c] / temperature;
    log_softmax_row(log_q.data() + base, scaled.data(), classes, 1);
    for (int64_t c = 0; c < classes; ++c) {
      const double lp = log_p.data()[base + c];
      total += std::exp(lp) * (lp - log_q.data()[base + c]);
    }
  }
  Tensor loss = Tensor::scalar(static_cast<float>(total * temperature * temperature / batch));
  if (!any_requires_grad({&student})) return loss;
  return record(loss, "distillation_loss", {student}, [=](const Tensor& g, const Node&) {
    Tensor ds = Tensor::empty(log_q.shape());
    const float scale = g.item() * temperature / batch;
    for (int64_t i = 0; i < ds.numel(); ++i)
      ds.data()[i] = scale * (std::exp(log_q.data()[i]) - std::exp(log_p.data()[i]));
    return std::vector<Tensor>{ds};
  });
}

}  // namespace qforge
