// Derivative table (g = dL/dy, y = conv(x, W) + b):
//   dx = conv_transpose(g, W)   (backward data)
//   dW = g ⋆ x                  (backward weights: correlate g with x)
//   db = Σ_{n,oh,ow} g
#include "core/ops/conv.h"

#include "core/autograd.h"
#include "core/flop_counter.h"
#include "core/kernels/conv2d.h"
#include "core/ops/elementwise.h"
#include "core/profiler.h"

namespace qforge {

namespace {

// The checked kernel shape of conv2d(input, weight, bias, options).
kernels::Conv2dShape checked_shape(const Shape& input, const Tensor& weight, const Tensor& bias,
                                   const Conv2dOptions& options) {
  QF_CHECK(static_cast<int64_t>(input.size()) == 4, "conv2d: expected 4-D input (N,C,H,W), got ", input);
  QF_CHECK(weight.dim() == 4, "conv2d: expected 4-D weight (O,C/groups,KH,KW), got ", weight.shape());
  const int64_t groups = options.groups;
  QF_CHECK(groups >= 1 && input[1] % groups == 0 && weight.size(0) % groups == 0, "conv2d: groups ", groups,
           " must divide input channels ", input[1], " and output channels ", weight.size(0));
  QF_CHECK(weight.size(1) * groups == input[1], "conv2d: weight ", weight.shape(), " with groups ", groups,
           " expects ", weight.size(1) * groups, " input channels, got input ", input);
  QF_CHECK(!bias.defined() || bias.shape() == Shape{weight.size(0)}, "conv2d: expected bias [",
           weight.size(0), "], got ", bias.shape());
  QF_CHECK(options.stride_height >= 1 && options.stride_width >= 1 && options.dilation_height >= 1 &&
               options.dilation_width >= 1 && options.padding_height >= 0 && options.padding_width >= 0,
           "conv2d: stride and dilation must be >= 1 and padding >= 0");
  kernels::Conv2dShape s{input[0],
                         input[1],
                         input[2],
                         input[3],
                         weight.size(0),
                         weight.size(2),
                         weight.size(3),
                         options.stride_height,
                         options.stride_width,
                         options.padding_height,
                         options.padding_width,
                         options.dilation_height,
                         options.dilation_width,
                         groups};
  QF_CHECK(s.out_height() >= 1 && s.out_width() >= 1, "conv2d: input ", input,
           " is smaller than the (dilated) kernel ", weight.shape(), " with padding ", options.padding_height,
           "x", options.padding_width);
  return s;
}

// The key of a conv's time (Note [Op profile]): input, weight, stride, groups.
auto describe_conv(const Shape& input_shape, const Tensor& weight, const kernels::Conv2dShape& s) {
  return [input_shape, weight_shape = weight.shape(), s] {
    std::string key = shape_to_string(input_shape) + " w" + shape_to_string(weight_shape);
    if (s.stride_height > 1 || s.stride_width > 1) key += " s" + std::to_string(s.stride_height);
    if (s.groups > 1) key += " g" + std::to_string(s.groups);
    return key;
  };
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
              Backend backend) {
  const kernels::Conv2dShape s = checked_shape(input.shape(), weight, bias, options);
  // The one place a conv backend is chosen.
  // Fast: oneDNN, or direct loops for groups of few channels (kernels/conv2d.h).
  const bool is_fast = backend == Backend::fast, is_grouped = is_fast && kernels::conv2d_grouped_applies(s);
  auto forward = is_grouped ? kernels::conv2d_forward_grouped
                 : is_fast  ? kernels::conv2d_forward_onednn
                            : kernels::conv2d_forward_reference;
  auto backward_data = is_grouped ? kernels::conv2d_backward_data_grouped
                       : is_fast  ? kernels::conv2d_backward_data_onednn
                                  : kernels::conv2d_backward_data_reference;
  auto backward_weights = is_fast && kernels::conv2d_grouped_weights_applies(s)
                              ? kernels::conv2d_backward_weights_grouped
                          : is_fast ? kernels::conv2d_backward_weights_onednn
                                    : kernels::conv2d_backward_weights_reference;

  const auto describe = describe_conv(input.shape(), weight, s);
  const ProfileScope profile("forward", "conv2d", describe);
  Tensor y = Tensor::empty({s.batch, s.out_channels, s.out_height(), s.out_width()});
  forward(y.data(), input.data(), weight.data(), bias.defined() ? bias.data() : nullptr, s);
  count_multiply_adds(s.macs());
  if (!any_requires_grad({&input, &weight, &bias})) return y;

  Tensor saved_x = input.detach(), saved_w = weight.detach();  // (N,C,H,W), (O,C/g,KH,KW)
  return record(y, "conv2d", {input, weight, bias}, [=](const Tensor& g, const Node& node) {
    Tensor dx, dw, db;
    if (node.needs_grad(0)) {
      const ProfileScope profile_data("backward-data", "conv2d", describe);
      count_multiply_adds(s.macs());
      dx = Tensor::empty(saved_x.shape());
      backward_data(dx.data(), g.data(), saved_w.data(), s);
    }
    if (node.needs_grad(1) || node.needs_grad(2)) {
      const ProfileScope profile_weights("backward-weights", "conv2d", describe);
      count_multiply_adds(s.macs());
      dw = Tensor::empty(saved_w.shape());
      if (node.needs_grad(2)) db = Tensor::empty({s.out_channels});
      backward_weights(dw.data(), db.defined() ? db.data() : nullptr, g.data(), saved_x.data(), s);
      if (!node.needs_grad(1)) dw = Tensor();
    }
    return std::vector<Tensor>{dx, dw, db};
  });
}

Tensor conv2d_relu(const Tensor& input, const Tensor& weight, const Tensor& bias,
                   const Conv2dOptions& options, Backend backend) {
  if (backend != Backend::fast || any_requires_grad({&input, &weight, &bias}))
    return relu(conv2d(input, weight, bias, options, backend));
  const kernels::Conv2dShape s = checked_shape(input.shape(), weight, bias, options);
  if (kernels::conv2d_grouped_applies(s)) return relu(conv2d(input, weight, bias, options, backend));
  const ProfileScope profile("forward", "conv2d_relu", describe_conv(input.shape(), weight, s));
  Tensor y = Tensor::empty({s.batch, s.out_channels, s.out_height(), s.out_width()});
  kernels::conv2d_forward_relu_onednn(y.data(), input.data(), weight.data(),
                                      bias.defined() ? bias.data() : nullptr, s);
  count_multiply_adds(s.macs());
  return y;
}

int64_t channel_block() { return kernels::onednn_channel_block(); }

Tensor to_channel_blocked(const Tensor& nchw) {
  const int64_t block = channel_block();
  QF_CHECK(block > 0, "to_channel_blocked: this machine's oneDNN has no blocked layout");
  QF_CHECK(nchw.dim() == 4 && nchw.size(1) % block == 0,
           "to_channel_blocked: expected (N,C,H,W) with C a multiple of ", block, ", got ", nchw.shape());
  const Tensor& x = nchw;
  Tensor y = Tensor::empty({x.size(0), x.size(1) / block, x.size(2), x.size(3), block});
  kernels::to_channel_blocked(y.data(), x.data(), x.size(0), x.size(1), x.size(2) * x.size(3), block);
  return y;
}

Tensor from_channel_blocked(const Tensor& blocked) {
  QF_CHECK(blocked.dim() == 5, "from_channel_blocked: expected (N,C/B,H,W,B), got ", blocked.shape());
  const int64_t block = blocked.size(4), channels = blocked.size(1) * block;
  const Tensor& x = blocked;
  Tensor y = Tensor::empty({x.size(0), channels, x.size(2), x.size(3)});
  kernels::from_channel_blocked(y.data(), x.data(), x.size(0), channels, x.size(2) * x.size(3), block);
  return y;
}

namespace {

// The NCHW shape a blocked (5-D) or NCHW (4-D) activation stands for.
Shape logical_shape(const Tensor& x) {
  if (x.dim() != 5) return x.shape();
  return {x.size(0), x.size(1) * x.size(4), x.size(2), x.size(3)};
}

}  // namespace

bool conv2d_blocked_applies(const Tensor& input, const Tensor& weight, const Conv2dOptions& options) {
  const int64_t block = channel_block();
  if (block == 0 || options.groups != 1 || weight.dim() != 4 || weight.size(0) % block != 0) return false;
  return input.dim() == 4 || (input.dim() == 5 && input.size(4) == block);
}

namespace {

// conv2d_blocked's work: into a new tensor, or, with `onto`, adding the conv to what it holds.
Tensor blocked_conv(const Tensor& input, const Tensor& weight, const Tensor& bias,
                    const Conv2dOptions& options, bool relu, const Tensor* onto,
                    kernels::ReorderedWeights* kept) {
  QF_CHECK(conv2d_blocked_applies(input, weight, options), "conv2d_blocked: input ", input.shape(),
           " weight ", weight.shape(), " groups ", options.groups,
           ": not a blocked conv on this machine (block ", channel_block(), ")");
  QF_CHECK(!any_requires_grad({&input, &weight, &bias}) && (!onto || !any_requires_grad({onto})),
           "conv2d_blocked: inference only (no gradient)");
  const int64_t block = channel_block();
  Tensor x = input;
  if (x.dim() == 4 && x.size(1) % block == 0) x = to_channel_blocked(x);
  const bool x_blocked = x.dim() == 5;
  // The shape checks of conv2d, on the activation's NCHW shape.
  const Shape logical = logical_shape(x);
  const kernels::Conv2dShape s = checked_shape(logical, weight, bias, options);
  const Shape out{s.batch, s.out_channels / block, s.out_height(), s.out_width(), block};
  Tensor y;
  if (onto) {
    QF_CHECK(onto->shape() == out, "conv2d_blocked: residual ", onto->shape(), " is not the output's ", out);
    QF_CHECK(onto->data() != x.data(), "conv2d_blocked: the residual to add onto is the conv's own input");
    y = *onto;
  } else {
    y = Tensor::empty(out);
  }
  const ProfileScope profile("forward", relu ? "conv2d_blocked_relu" : "conv2d_blocked",
                             describe_conv(logical, weight, s));
  kernels::conv2d_forward_blocked_onednn(y.data(), x.data(), x_blocked, weight.data(),
                                         bias.defined() ? bias.data() : nullptr, s, onto != nullptr, relu,
                                         kept);
  count_multiply_adds(s.macs());
  return y;
}

}  // namespace

Tensor conv2d_blocked(const Tensor& input, const Tensor& weight, const Tensor& bias,
                      const Conv2dOptions& options, bool relu, const Tensor& residual,
                      kernels::ReorderedWeights* kept) {
  if (!residual.defined()) return blocked_conv(input, weight, bias, options, relu, nullptr, kept);
  const Tensor onto = residual.clone();
  return blocked_conv(input, weight, bias, options, relu, &onto, kept);
}

void conv2d_blocked_onto(Tensor& residual, const Tensor& input, const Tensor& weight, const Tensor& bias,
                         const Conv2dOptions& options, bool relu, kernels::ReorderedWeights* kept) {
  blocked_conv(input, weight, bias, options, relu, &residual, kept);
}

}  // namespace qforge
