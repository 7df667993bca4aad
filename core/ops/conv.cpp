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
kernels::Conv2dShape checked_shape(const Tensor& input, const Tensor& weight, const Tensor& bias,
                                   const Conv2dOptions& options) {
  QF_CHECK(input.dim() == 4, "conv2d: expected 4-D input (N,C,H,W), got ", input.shape());
  QF_CHECK(weight.dim() == 4, "conv2d: expected 4-D weight (O,C/groups,KH,KW), got ", weight.shape());
  const int64_t groups = options.groups;
  QF_CHECK(groups >= 1 && input.size(1) % groups == 0 && weight.size(0) % groups == 0, "conv2d: groups ",
           groups, " must divide input channels ", input.size(1), " and output channels ", weight.size(0));
  QF_CHECK(weight.size(1) * groups == input.size(1), "conv2d: weight ", weight.shape(), " with groups ",
           groups, " expects ", weight.size(1) * groups, " input channels, got input ", input.shape());
  QF_CHECK(!bias.defined() || bias.shape() == Shape{weight.size(0)}, "conv2d: expected bias [",
           weight.size(0), "], got ", bias.shape());
  QF_CHECK(options.stride_height >= 1 && options.stride_width >= 1 && options.dilation_height >= 1 &&
               options.dilation_width >= 1 && options.padding_height >= 0 && options.padding_width >= 0,
           "conv2d: stride and dilation must be >= 1 and padding >= 0");
  kernels::Conv2dShape s{input.size(0),          input.size(1),
                         input.size(2),          input.size(3),
                         weight.size(0),         weight.size(2),
                         weight.size(3),         options.stride_height,
                         options.stride_width,   options.padding_height,
                         options.padding_width,  options.dilation_height,
                         options.dilation_width, groups};
  QF_CHECK(s.out_height() >= 1 && s.out_width() >= 1, "conv2d: input ", input.shape(),
           " is smaller than the (dilated) kernel ", weight.shape(), " with padding ", options.padding_height,
           "x", options.padding_width);
  return s;
}

// The key of a conv's time (Note [Op profile]): input, weight, stride, groups.
auto describe_conv(const Tensor& input, const Tensor& weight, const kernels::Conv2dShape& s) {
  return [input_shape = input.shape(), weight_shape = weight.shape(), s] {
    std::string key = shape_to_string(input_shape) + " w" + shape_to_string(weight_shape);
    if (s.stride_height > 1 || s.stride_width > 1) key += " s" + std::to_string(s.stride_height);
    if (s.groups > 1) key += " g" + std::to_string(s.groups);
    return key;
  };
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
              Backend backend) {
  const kernels::Conv2dShape s = checked_shape(input, weight, bias, options);
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

  const auto describe = describe_conv(input, weight, s);
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
  const kernels::Conv2dShape s = checked_shape(input, weight, bias, options);
  if (kernels::conv2d_grouped_applies(s)) return relu(conv2d(input, weight, bias, options, backend));
  const ProfileScope profile("forward", "conv2d_relu", describe_conv(input, weight, s));
  Tensor y = Tensor::empty({s.batch, s.out_channels, s.out_height(), s.out_width()});
  kernels::conv2d_forward_relu_onednn(y.data(), input.data(), weight.data(),
                                      bias.defined() ? bias.data() : nullptr, s);
  count_multiply_adds(s.macs());
  return y;
}

}  // namespace qforge
