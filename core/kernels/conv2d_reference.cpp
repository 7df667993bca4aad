// Convolution as im2col + GEMM (Chellapilla et al. 2006), one image and one group at a
// time, on the reference GEMM (three loops in double, kernels/gemm.h) — so this twin of
// the oneDNN convolution calls no fast library and the tests comparing them mean something.
// col (C/g·KH·KW, OH·OW) gathers every input patch, then
//   forward:          y_g  = W_g · col                 (O/g, OH·OW)
//   backward data:    col' = W_gᵀ · dy_g, scattered back by col2im
//   backward weights: dW_g += dy_g · colᵀ
#include <algorithm>
#include <vector>

#include "core/kernels/conv2d.h"
#include "core/kernels/gemm.h"

namespace qforge::kernels {

namespace {

// col[(c,kh,kw), (oh,ow)] = x[c, oh·sh - ph + kh·dh, ow·sw - pw + kw·dw], 0 outside.
void im2col(float* col, const float* x, int64_t channels, const Conv2dShape& s) {
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t kh = 0; kh < s.kernel_height; ++kh)
      for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
        float* row = col + ((c * s.kernel_height + kh) * s.kernel_width + kw) * oh_count * ow_count;
        for (int64_t oh = 0; oh < oh_count; ++oh) {
          int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
          for (int64_t ow = 0; ow < ow_count; ++ow) {
            int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
            bool inside = ih >= 0 && ih < s.in_height && iw >= 0 && iw < s.in_width;
            row[oh * ow_count + ow] = inside ? x[(c * s.in_height + ih) * s.in_width + iw] : 0.0f;
          }
        }
      }
}

// The adjoint of im2col: dx[c, ih, iw] += col[(c,kh,kw), (oh,ow)].
void col2im(float* dx, const float* col, int64_t channels, const Conv2dShape& s) {
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t kh = 0; kh < s.kernel_height; ++kh)
      for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
        const float* row = col + ((c * s.kernel_height + kh) * s.kernel_width + kw) * oh_count * ow_count;
        for (int64_t oh = 0; oh < oh_count; ++oh) {
          int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
          if (ih < 0 || ih >= s.in_height) continue;
          for (int64_t ow = 0; ow < ow_count; ++ow) {
            int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
            if (iw >= 0 && iw < s.in_width)
              dx[(c * s.in_height + ih) * s.in_width + iw] += row[oh * ow_count + ow];
          }
        }
      }
}

struct GroupSizes {
  int64_t in_per_group, out_per_group, patch, pixels, in_image, out_image;
};

GroupSizes group_sizes(const Conv2dShape& s) {
  GroupSizes g;
  g.in_per_group = s.in_channels / s.groups;
  g.out_per_group = s.out_channels / s.groups;
  g.patch = g.in_per_group * s.kernel_height * s.kernel_width;
  g.pixels = s.out_height() * s.out_width();
  g.in_image = s.in_channels * s.in_height * s.in_width;
  g.out_image = s.out_channels * g.pixels;
  return g;
}

}  // namespace

void conv2d_forward_reference(float* y, const float* x, const float* w, const float* b,
                              const Conv2dShape& s) {
  GroupSizes g = group_sizes(s);
  std::vector<float> col(g.patch * g.pixels);  // (C/g·KH·KW, OH·OW)
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t group = 0; group < s.groups; ++group) {
      im2col(col.data(), x + n * g.in_image + group * g.in_per_group * s.in_height * s.in_width,
             g.in_per_group, s);
      float* y_group = y + n * g.out_image + group * g.out_per_group * g.pixels;  // (O/g, OH·OW)
      gemm_reference(false, false, g.out_per_group, g.pixels, g.patch, 1.0f,
                     w + group * g.out_per_group * g.patch, g.patch, col.data(), g.pixels, 0.0f, y_group,
                     g.pixels);
      if (b)
        for (int64_t o = 0; o < g.out_per_group; ++o)
          for (int64_t p = 0; p < g.pixels; ++p) y_group[o * g.pixels + p] += b[group * g.out_per_group + o];
    }
}

void conv2d_backward_data_reference(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  GroupSizes g = group_sizes(s);
  std::vector<float> col(g.patch * g.pixels);
  std::fill_n(dx, s.batch * g.in_image, 0.0f);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t group = 0; group < s.groups; ++group) {
      // col' = W_gᵀ · dy_g   (C/g·KH·KW, OH·OW)
      gemm_reference(true, false, g.patch, g.pixels, g.out_per_group, 1.0f,
                     w + group * g.out_per_group * g.patch, g.patch,
                     dy + n * g.out_image + group * g.out_per_group * g.pixels, g.pixels, 0.0f, col.data(),
                     g.pixels);
      col2im(dx + n * g.in_image + group * g.in_per_group * s.in_height * s.in_width, col.data(),
             g.in_per_group, s);
    }
}

void conv2d_backward_weights_reference(float* dw, float* db, const float* dy, const float* x,
                                       const Conv2dShape& s) {
  GroupSizes g = group_sizes(s);
  std::vector<float> col(g.patch * g.pixels);
  std::fill_n(dw, s.out_channels * g.patch, 0.0f);
  if (db) std::fill_n(db, s.out_channels, 0.0f);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t group = 0; group < s.groups; ++group) {
      im2col(col.data(), x + n * g.in_image + group * g.in_per_group * s.in_height * s.in_width,
             g.in_per_group, s);
      const float* dy_group = dy + n * g.out_image + group * g.out_per_group * g.pixels;
      // dW_g += dy_g · colᵀ   (O/g, C/g·KH·KW)
      gemm_reference(false, true, g.out_per_group, g.patch, g.pixels, 1.0f, dy_group, g.pixels, col.data(),
                     g.pixels, 1.0f, dw + group * g.out_per_group * g.patch, g.patch);
      if (db)
        for (int64_t o = 0; o < g.out_per_group; ++o)
          for (int64_t p = 0; p < g.pixels; ++p)
            db[group * g.out_per_group + o] += dy_group[o * g.pixels + p];
    }
}

}  // namespace qforge::kernels
