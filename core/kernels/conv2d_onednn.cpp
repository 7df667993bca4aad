// Convolution through oneDNN primitives (v2 API). Primitive creation costs far more
// than a small convolution, so each (shape, direction, with-bias) is created once and
// cached (Note [Primitive cache]). Activations stay NCHW, weights OIHW/GOIHW: the
// caller's layout, so no reorders are needed at the boundary.
#include <map>
#include <memory>
#include <mutex>

#include "core/kernels/conv2d.h"
#include "core/kernels/onednn_context.h"

namespace qforge::kernels {

dnnl::engine& onednn_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& onednn_stream() {
  thread_local dnnl::stream stream(onednn_engine());
  return stream;
}

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

struct ConvPrimitives {
  memory::desc src, weights, bias, dst;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  std::unique_ptr<dnnl::convolution_backward_data> backward_data;
  std::unique_ptr<dnnl::convolution_backward_weights> backward_weights;
  memory::dims strides, dilates, padding_left, padding_right;
};

memory::desc weights_desc(const Conv2dShape& s) {
  if (s.groups == 1)
    return {{s.out_channels, s.in_channels, s.kernel_height, s.kernel_width}, DataType::f32, Tag::oihw};
  return {{s.groups, s.out_channels / s.groups, s.in_channels / s.groups, s.kernel_height, s.kernel_width},
          DataType::f32,
          Tag::goihw};
}

ConvPrimitives& primitives_for(const Conv2dShape& s, bool has_bias) {
  static std::mutex mutex;
  static std::map<std::pair<decltype(s.key()), bool>, std::unique_ptr<ConvPrimitives>> cache;
  std::lock_guard lock(mutex);
  auto& slot = cache[{s.key(), has_bias}];
  if (slot) return *slot;

  auto p = std::make_unique<ConvPrimitives>();
  const int64_t oh = s.out_height(), ow = s.out_width();
  p->src = memory::desc({s.batch, s.in_channels, s.in_height, s.in_width}, DataType::f32, Tag::nchw);
  p->weights = weights_desc(s);
  p->bias = has_bias ? memory::desc({s.out_channels}, DataType::f32, Tag::x) : memory::desc();
  p->dst = memory::desc({s.batch, s.out_channels, oh, ow}, DataType::f32, Tag::nchw);
  p->strides = {s.stride_height, s.stride_width};
  p->dilates = {s.dilation_height - 1, s.dilation_width - 1};  // oneDNN counts dilation from 0
  p->padding_left = {s.padding_height, s.padding_width};
  // Right padding that makes oneDNN's output extent equal ours (floor division).
  p->padding_right = {
      (oh - 1) * s.stride_height + (s.kernel_height - 1) * s.dilation_height + 1 - s.in_height -
          s.padding_height,
      (ow - 1) * s.stride_width + (s.kernel_width - 1) * s.dilation_width + 1 - s.in_width - s.padding_width};
  dnnl::convolution_forward::desc forward_desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, p->src, p->weights, p->bias,
      p->dst, p->strides, p->dilates, p->padding_left, p->padding_right);
  p->forward_pd = dnnl::convolution_forward::primitive_desc(forward_desc, onednn_engine());
  p->forward = dnnl::convolution_forward(p->forward_pd);
  slot = std::move(p);
  return *slot;
}

memory wrap(const memory::desc& desc, const float* data) {
  return memory(desc, onednn_engine(), const_cast<float*>(data));
}

}  // namespace

void conv2d_forward_onednn(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s) {
  ConvPrimitives& p = primitives_for(s, b != nullptr);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, wrap(p.src, x)}, {DNNL_ARG_WEIGHTS, wrap(p.weights, w)}, {DNNL_ARG_DST, wrap(p.dst, y)}};
  if (b) args.emplace(DNNL_ARG_BIAS, wrap(p.bias, b));
  p.forward.execute(onednn_stream(), args);
  onednn_stream().wait();
}

void conv2d_backward_data_onednn(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  ConvPrimitives& p = primitives_for(s, false);
  {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    if (!p.backward_data) {
      dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, p.src, p.weights, p.dst,
                                                 p.strides, p.dilates, p.padding_left, p.padding_right);
      dnnl::convolution_backward_data::primitive_desc pd(desc, onednn_engine(), p.forward_pd);
      p.backward_data = std::make_unique<dnnl::convolution_backward_data>(pd);
    }
  }
  p.backward_data->execute(onednn_stream(), {{DNNL_ARG_DIFF_DST, wrap(p.dst, dy)},
                                             {DNNL_ARG_WEIGHTS, wrap(p.weights, w)},
                                             {DNNL_ARG_DIFF_SRC, wrap(p.src, dx)}});
  onednn_stream().wait();
}

void conv2d_backward_weights_onednn(float* dw, float* db, const float* dy, const float* x,
                                    const Conv2dShape& s) {
  ConvPrimitives& p = primitives_for(s, db != nullptr);
  {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    if (!p.backward_weights) {
      dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, p.src, p.weights,
                                                    p.bias, p.dst, p.strides, p.dilates, p.padding_left,
                                                    p.padding_right);
      dnnl::convolution_backward_weights::primitive_desc pd(desc, onednn_engine(), p.forward_pd);
      p.backward_weights = std::make_unique<dnnl::convolution_backward_weights>(pd);
    }
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, wrap(p.src, x)},
                                       {DNNL_ARG_DIFF_DST, wrap(p.dst, dy)},
                                       {DNNL_ARG_DIFF_WEIGHTS, wrap(p.weights, dw)}};
  if (db) args.emplace(DNNL_ARG_DIFF_BIAS, wrap(p.bias, db));
  p.backward_weights->execute(onednn_stream(), args);
  onednn_stream().wait();
}

}  // namespace qforge::kernels
