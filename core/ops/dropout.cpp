// Derivative: dx = g·mask/(1-p), the same mask as the forward pass.
#include "core/ops/dropout.h"

#include <vector>

#include "core/autograd.h"

namespace qforge {

Tensor dropout(const Tensor& x, float p, bool is_training, Generator& generator) {
  QF_CHECK(p >= 0.0f && p <= 1.0f, "dropout: probability must be in [0, 1], got ", p);
  if (!is_training || p == 0.0f) return x;
  const int64_t n = x.numel();
  const float keep_scale = p == 1.0f ? 0.0f : 1.0f / (1.0f - p);
  std::vector<float> mask(n);  // 0 or 1/(1-p)
  for (int64_t i = 0; i < n; ++i) mask[i] = generator.uniform() < p ? 0.0f : keep_scale;
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for (int64_t i = 0; i < n; ++i) py[i] = px[i] * mask[i];
  return record(y, "dropout", {x}, [mask = std::move(mask)](const Tensor& g, const Node&) {
    Tensor dx = Tensor::empty(g.shape());
    const float* pg = g.data();
    float* out = dx.data();
    for (std::size_t i = 0; i < mask.size(); ++i) out[i] = pg[i] * mask[i];
    return std::vector<Tensor>{dx};
  });
}

}  // namespace qforge
