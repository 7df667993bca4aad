// 2-D convolution kernels, NCHW activations, OIHW weights (O, C/groups, KH, KW).
// Two backends with one contract (Note [Backends]):
//   *_reference — im2col + GEMM, written to be read;
//   *_onednn    — oneDNN primitives, created once per shape and cached;
//   *_grouped   — direct loops for groups of at most 4 channels, stride 1, no dilation
//                 (conv2d_grouped_applies), where oneDNN runs at 2% of peak.
// The fast backend is oneDNN, or the grouped kernels where they apply (the weight gradient
// also for few input channels: the first layer).
// Tests hold the two to the same outputs. Pure functions: pointers, then sizes.
#pragma once

#include <cstdint>
#include <memory>
#include <tuple>

namespace qforge::kernels {

struct Conv2dShape {
  int64_t batch, in_channels, in_height, in_width;
  int64_t out_channels, kernel_height, kernel_width;
  int64_t stride_height = 1, stride_width = 1;
  int64_t padding_height = 0, padding_width = 0;
  int64_t dilation_height = 1, dilation_width = 1;
  int64_t groups = 1;

  // 0 when the kernel does not fit (a negative span must not truncate toward zero to 0 + 1).
  int64_t out_height() const {
    const int64_t span = in_height + 2 * padding_height - dilation_height * (kernel_height - 1) - 1;
    return span < 0 ? 0 : span / stride_height + 1;
  }
  int64_t out_width() const {
    const int64_t span = in_width + 2 * padding_width - dilation_width * (kernel_width - 1) - 1;
    return span < 0 ? 0 : span / stride_width + 1;
  }
  // Multiply-adds of one forward pass; the backward passes cost the same each.
  double macs() const {
    const int64_t in_per_group = in_channels / groups;
    return static_cast<double>(batch) * out_channels * out_height() * out_width() * in_per_group *
           kernel_height * kernel_width;
  }
  auto key() const {
    return std::tuple(batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
                      stride_height, stride_width, padding_height, padding_width, dilation_height,
                      dilation_width, groups);
  }
};

//   y (N,O,OH,OW) = conv(x (N,C,H,W), w (O,C/g,KH,KW)) + b (O) [b may be null]
void conv2d_forward_reference(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s);
//   dx (N,C,H,W) = conv_transpose(dy, w)
void conv2d_backward_data_reference(float* dx, const float* dy, const float* w, const Conv2dShape& s);
//   dw (O,C/g,KH,KW) = dy ⋆ x;  db (O) = Σ dy  [db may be null]
void conv2d_backward_weights_reference(float* dw, float* db, const float* dy, const float* x,
                                       const Conv2dShape& s);

void conv2d_forward_onednn(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s);
// Inference: y = max(conv(x, w) + b, 0), the ReLU applied as the conv writes y (a oneDNN
// post-op; a NaN stays NaN). Its own cached primitive.
void conv2d_forward_relu_onednn(float* y, const float* x, const float* w, const float* b,
                                const Conv2dShape& s);
void conv2d_backward_data_onednn(float* dx, const float* dy, const float* w, const Conv2dShape& s);

// Note [Blocked inference]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// oneDNN's direct convolutions read and write channel-blocked activations, nChw{B}c: the
// tensor [N, C/B, H, W, B], B channels contiguous (B = 16 with AVX-512, 8 with AVX2). Run
// from NCHW, each conv reorders its input and its output, two passes over each activation:
// in a ResNet's inference those reorders took 43% of the time (12.4 of 28.5 ms per 256
// images, ONEDNN_VERBOSE). Inference (nn/inference.h) keeps the activations blocked
// from one conv to the next, and reorders once on the way in (not at all from a 1-channel
// image: the first conv reads NCHW) and once on the way out.
//
// The channel block of this machine's oneDNN kernels; 0 when it has none (before AVX2): then
// nothing runs blocked.
int64_t onednn_channel_block();
// y (blocked [N, O/B, OH, OW, B]) = conv(x, w) + b [+ y] [then max(·, 0)]: x blocked
// ([N, C/B, H, W, B]) or, when !x_blocked, NCHW; `accumulate` adds the conv to what y holds
// (oneDNN's sum post-op: a residual add), `relu` applies max(·, 0) last, as the conv writes.
// Needs groups == 1, O a multiple of B, and C a multiple of B when x is blocked.
// `kept`, when given, holds w in the layout the primitive reads, for a caller whose weights
// are the same from call to call (nn's inference, Note [Inference weights] in
// nn/inference.cpp): the first call reorders w into it, later calls whose primitive reads the
// same layout use it as it is. A caller that changes w must drop it.
class ReorderedWeights;
void conv2d_forward_blocked_onednn(float* y, const float* x, bool x_blocked, const float* w, const float* b,
                                   const Conv2dShape& s, bool accumulate, bool relu,
                                   ReorderedWeights* kept = nullptr);
// The holder: the layout and the reordered floats (defined in conv2d_onednn.cpp).
class ReorderedWeights {
 public:
  ReorderedWeights();
  ~ReorderedWeights();
  ReorderedWeights(const ReorderedWeights&) = delete;
  ReorderedWeights& operator=(const ReorderedWeights&) = delete;
  void clear();  // for weights that changed
  struct State;
  std::unique_ptr<State> state;
};
// NCHW <-> blocked (C a multiple of B): plain loops, the same floats moved.
void to_channel_blocked(float* blocked, const float* nchw, int64_t n, int64_t c, int64_t hw, int64_t block);
void from_channel_blocked(float* nchw, const float* blocked, int64_t n, int64_t c, int64_t hw, int64_t block);

void conv2d_backward_weights_onednn(float* dw, float* db, const float* dy, const float* x,
                                    const Conv2dShape& s);

bool conv2d_grouped_applies(const Conv2dShape& s);
// Only the weight gradient: at most 4 input channels per group (the first layer too).
bool conv2d_grouped_weights_applies(const Conv2dShape& s);
void conv2d_forward_grouped(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s);
void conv2d_backward_data_grouped(float* dx, const float* dy, const float* w, const Conv2dShape& s);
void conv2d_backward_weights_grouped(float* dw, float* db, const float* dy, const float* x,
                                     const Conv2dShape& s);

}  // namespace qforge::kernels
