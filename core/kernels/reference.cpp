#include "core/kernels/reference.h"

#include <cmath>
#include <limits>

namespace qforge::kernels::reference {

void max_pool2d(float* y, int32_t* argmax, const float* x, int64_t planes, int64_t height, int64_t width,
                int64_t out_height, int64_t out_width, const Window2d& w) {
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < out_height; ++oh)
      for (int64_t ow = 0; ow < out_width; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_at = -1;
        for (int64_t kh = 0; kh < w.kernel_height; ++kh)
          for (int64_t kw = 0; kw < w.kernel_width; ++kw) {
            const int64_t ih = oh * w.stride_height - w.padding_height + kh * w.dilation_height;
            const int64_t iw = ow * w.stride_width - w.padding_width + kw * w.dilation_width;
            if (ih < 0 || ih >= height || iw < 0 || iw >= width) continue;
            const float v = x[(p * height + ih) * width + iw];
            if (best_at < 0 || v > best || std::isnan(v)) best = v, best_at = ih * width + iw;
          }
        y[(p * out_height + oh) * out_width + ow] = best;
        argmax[(p * out_height + oh) * out_width + ow] = static_cast<int32_t>(best_at);
      }
}

void batch_norm_forward(float* y, double* mean, double* variance, const float* x, int64_t batch,
                        int64_t channels, int64_t spatial, const float* gamma, const float* beta,
                        bool is_training, float eps) {
  const int64_t count = batch * spatial;
  for (int64_t c = 0; c < channels; ++c) {
    if (is_training) {
      double total = 0, squares = 0;
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t s = 0; s < spatial; ++s) total += x[(n * channels + c) * spatial + s];
      mean[c] = total / count;
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t s = 0; s < spatial; ++s) {
          const double d = x[(n * channels + c) * spatial + s] - mean[c];
          squares += d * d;
        }
      variance[c] = squares / count;
    }
    const double inverse_std = 1.0 / std::sqrt(variance[c] + eps);
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t s = 0; s < spatial; ++s) {
        const int64_t at = (n * channels + c) * spatial + s;
        const double normalized = (x[at] - mean[c]) * inverse_std;
        y[at] = static_cast<float>((gamma ? gamma[c] : 1.0) * normalized + (beta ? beta[c] : 0.0));
      }
  }
}

void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* g, const float* x,
                         const double* mean, const double* variance, int64_t batch, int64_t channels,
                         int64_t spatial, const float* gamma, bool is_training, float eps) {
  const int64_t count = batch * spatial;
  for (int64_t c = 0; c < channels; ++c) {
    const double inverse_std = 1.0 / std::sqrt(variance[c] + eps);
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t s = 0; s < spatial; ++s) {
        const int64_t at = (n * channels + c) * spatial + s;
        sum_g += g[at];
        sum_g_xhat += g[at] * (x[at] - mean[c]) * inverse_std;
      }
    dgamma[c] = static_cast<float>(sum_g_xhat);
    dbeta[c] = static_cast<float>(sum_g);
    const double k = (gamma ? gamma[c] : 1.0) * inverse_std;
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t s = 0; s < spatial; ++s) {
        const int64_t at = (n * channels + c) * spatial + s;
        const double xhat = (x[at] - mean[c]) * inverse_std;
        dx[at] = static_cast<float>(is_training ? k * (g[at] - sum_g / count - xhat * sum_g_xhat / count)
                                                : k * g[at]);
      }
  }
}

void lstm_cell(float* h, float* c, const float* gates, const float* c_prev, int64_t batch, int64_t hidden) {
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < hidden; ++j) {
      const float* a = gates + b * 4 * hidden;
      const double i = sigmoid(a[j]), f = sigmoid(a[hidden + j]), g = std::tanh(double{a[2 * hidden + j]}),
                   o = sigmoid(a[3 * hidden + j]);
      const double cell = f * c_prev[b * hidden + j] + i * g;
      c[b * hidden + j] = static_cast<float>(cell);
      h[b * hidden + j] = static_cast<float>(o * std::tanh(cell));
    }
}

}  // namespace qforge::kernels::reference
