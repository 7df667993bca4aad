// Convolution through oneDNN primitives (v2 API). Primitive creation costs far more
// than a small convolution, so each (shape, direction, with-bias) is created once and
// cached (Note [Primitive cache]).
//
// Layouts: our tensors are NCHW / OIHW. With those plain layouts oneDNN can only run
// im2col + GEMM; its direct AVX2/AVX-512 kernels want channel-blocked layouts
// (nChw8c, OIhw8i8o). So each primitive is created with layout "any", and a
// LayoutBridge reorders at the boundary when oneDNN picked something else. The
// reorders cost two passes over the data; the direct kernels save far more (measured
// by bench/bench_kernels, see docs/kernels.md). One measured exception: with fewer
// than 8 input channels per group (a network's first layer), backward-weights is
// faster on the plain layouts, so it keeps them. The choice is fixed per shape, never
// timed at run time, so a run is reproducible.
#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "core/error.h"
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

// Reorder buffers are borrowed per call from three per-thread scratch slots (one per
// argument that may need reordering), grown to the largest need, instead of each cached
// primitive owning its own: with primitives cached for every batch size seen, owned
// buffers would add up to more than the activations.
void* scratch(int slot, std::size_t bytes) {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  thread_local std::array<std::unique_ptr<void, Free>, 3> buffers;
  thread_local std::array<std::size_t, 3> sizes{};
  if (sizes[slot] < bytes) {
    const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
    buffers[slot].reset(std::aligned_alloc(64, rounded));
    QF_CHECK(buffers[slot] != nullptr, "conv2d: out of memory for a ", rounded, "-byte reorder buffer");
    sizes[slot] = rounded;
  }
  return buffers[slot].get();
}

// Moves one argument between our plain layout and the layout a primitive chose.
}  // namespace

struct ReorderedWeights::State {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  memory::desc layout;
  std::unique_ptr<float, Free> floats;
};
ReorderedWeights::ReorderedWeights() = default;
ReorderedWeights::~ReorderedWeights() = default;
void ReorderedWeights::clear() { state.reset(); }

namespace {

class LayoutBridge {
 public:
  LayoutBridge() = default;
  LayoutBridge(const memory::desc& user, const memory::desc& inner, int slot)
      : user_(user), inner_(inner), slot_(slot) {
    if (user != inner) {
      to_inner_ =
          dnnl::reorder(memory(user, onednn_engine(), nullptr), memory(inner, onednn_engine(), nullptr));
      to_user_ =
          dnnl::reorder(memory(inner, onednn_engine(), nullptr), memory(user, onednn_engine(), nullptr));
    }
  }
  // The argument to pass for an input held in `data` (plain layout).
  memory input(const float* data) const {
    memory user(user_, onednn_engine(), const_cast<float*>(data));
    if (!to_inner_) return user;
    memory inner(inner_, onednn_engine(), scratch(slot_, inner_.get_size()));
    to_inner_.execute(onednn_stream(), user, inner);
    return inner;
  }
  // The same from a holder that keeps the reordered floats: reordered only when it holds none
  // in this layout.
  memory kept_input(const float* data, ReorderedWeights& kept) const {
    if (!to_inner_) return input(data);
    if (!kept.state || kept.state->layout != inner_) {
      kept.state = std::make_unique<ReorderedWeights::State>();
      kept.state->layout = inner_;
      const std::size_t bytes = (inner_.get_size() + 63) / 64 * 64;
      kept.state->floats.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      QF_CHECK(kept.state->floats != nullptr, "conv2d: out of memory for ", bytes, " bytes of weights");
      memory user(user_, onednn_engine(), const_cast<float*>(data));
      memory inner(inner_, onednn_engine(), kept.state->floats.get());
      to_inner_.execute(onednn_stream(), user, inner);
    }
    return memory(inner_, onednn_engine(), kept.state->floats.get());
  }
  // The argument to pass for an output that must end up in `data`; call finish after.
  memory output(float* data) const {
    if (!to_user_) return memory(user_, onednn_engine(), data);
    return memory(inner_, onednn_engine(), scratch(slot_, inner_.get_size()));
  }
  void finish(float* data) const {
    if (!to_user_) return;
    memory produced(inner_, onednn_engine(), scratch(slot_, inner_.get_size()));
    memory user(user_, onednn_engine(), data);
    to_user_.execute(onednn_stream(), produced, user);
  }

 private:
  memory::desc user_, inner_;
  int slot_ = 0;
  dnnl::reorder to_inner_, to_user_;
};

struct ConvPrimitives {
  memory::desc src, weights, bias, dst;  // plain (user) layouts
  memory::dims strides, dilates, padding_left, padding_right;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  LayoutBridge forward_src, forward_weights, forward_dst;
  struct BackwardData {
    dnnl::convolution_backward_data primitive;
    LayoutBridge diff_dst, weights, diff_src;
  };
  struct BackwardWeights {
    dnnl::convolution_backward_weights primitive;
    LayoutBridge src, diff_dst, diff_weights;
  };
  std::optional<BackwardData> backward_data;
  std::optional<BackwardWeights> backward_weights;
};

memory::desc weights_desc(const Conv2dShape& s, Tag tag) {
  if (s.groups == 1)
    return {{s.out_channels, s.in_channels, s.kernel_height, s.kernel_width}, DataType::f32, tag};
  return {{s.groups, s.out_channels / s.groups, s.in_channels / s.groups, s.kernel_height, s.kernel_width},
          DataType::f32,
          tag};
}

memory::desc any_like(const memory::desc& desc) { return memory::desc(desc.dims(), DataType::f32, Tag::any); }

std::mutex cache_mutex;

// relu: with a ReLU post-op (conv2d_forward_relu_onednn), used for inference only. Both keep
// prop_kind forward_training: it hints the backward primitives, and with forward_inference
// oneDNN 2.6 picks a slower NHWC brgconv for the ResNets' 16-channel convs (260 -> 195 GFLOP/s).
ConvPrimitives& primitives_for(const Conv2dShape& s, bool has_bias, bool relu = false) {
  static std::map<std::tuple<decltype(s.key()), bool, bool>, std::unique_ptr<ConvPrimitives>> cache;
  std::lock_guard lock(cache_mutex);
  auto& slot = cache[{s.key(), has_bias, relu}];
  if (slot) return *slot;

  auto p = std::make_unique<ConvPrimitives>();
  const int64_t oh = s.out_height(), ow = s.out_width();
  p->src = memory::desc({s.batch, s.in_channels, s.in_height, s.in_width}, DataType::f32, Tag::nchw);
  p->weights = weights_desc(s, s.groups == 1 ? Tag::oihw : Tag::goihw);
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
  dnnl::convolution_forward::desc forward_desc(dnnl::prop_kind::forward_training,
                                               dnnl::algorithm::convolution_direct, any_like(p->src),
                                               any_like(p->weights), p->bias, any_like(p->dst), p->strides,
                                               p->dilates, p->padding_left, p->padding_right);
  dnnl::post_ops post_ops;
  if (relu) post_ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  dnnl::primitive_attr attributes;
  attributes.set_post_ops(post_ops);
  p->forward_pd = dnnl::convolution_forward::primitive_desc(forward_desc, attributes, onednn_engine());
  p->forward = dnnl::convolution_forward(p->forward_pd);
  p->forward_src = LayoutBridge(p->src, p->forward_pd.src_desc(), 0);
  p->forward_weights = LayoutBridge(p->weights, p->forward_pd.weights_desc(), 1);
  p->forward_dst = LayoutBridge(p->dst, p->forward_pd.dst_desc(), 2);
  slot = std::move(p);
  return *slot;
}

}  // namespace

namespace {

void forward(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s, bool relu) {
  ConvPrimitives& p = primitives_for(s, b != nullptr, relu);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.forward_src.input(x)},
                                       {DNNL_ARG_WEIGHTS, p.forward_weights.input(w)},
                                       {DNNL_ARG_DST, p.forward_dst.output(y)}};
  if (b) args.emplace(DNNL_ARG_BIAS, memory(p.bias, onednn_engine(), const_cast<float*>(b)));
  p.forward.execute(onednn_stream(), args);
  p.forward_dst.finish(y);
  onednn_stream().wait();
}

}  // namespace

void conv2d_forward_onednn(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s) {
  forward(y, x, w, b, s, false);
}

void conv2d_forward_relu_onednn(float* y, const float* x, const float* w, const float* b,
                                const Conv2dShape& s) {
  forward(y, x, w, b, s, true);
}

int64_t onednn_channel_block() {
  static const int64_t block = [] {
    using dnnl::cpu_isa;
    switch (dnnl::get_effective_cpu_isa()) {
      case cpu_isa::avx512_core:
      case cpu_isa::avx512_core_vnni:
      case cpu_isa::avx512_core_bf16:
      case cpu_isa::avx512_core_amx:
        return int64_t{16};
      case cpu_isa::avx2:
      case cpu_isa::avx2_vnni:
        return int64_t{8};
      default:
        return int64_t{0};
    }
  }();
  return block;
}

namespace {

struct BlockedConv {
  memory::desc src, weights, bias, dst;
  dnnl::convolution_forward primitive;
  LayoutBridge weights_bridge;
};

// Cached per (shape, bias, input blocked, accumulate, relu), as primitives_for's.
BlockedConv& blocked_primitive_for(const Conv2dShape& s, bool has_bias, bool x_blocked, bool accumulate,
                                   bool relu) {
  static std::map<std::tuple<decltype(s.key()), bool, bool, bool, bool>, std::unique_ptr<BlockedConv>> cache;
  std::lock_guard lock(cache_mutex);
  auto& slot = cache[{s.key(), has_bias, x_blocked, accumulate, relu}];
  if (slot) return *slot;
  const int64_t block = onednn_channel_block();
  QF_CHECK(
      block > 0 && s.groups == 1 && s.out_channels % block == 0 && (!x_blocked || s.in_channels % block == 0),
      "conv2d (blocked): needs groups 1 and channels in multiples of ", block);
  const Tag blocked = block == 16 ? Tag::nChw16c : Tag::nChw8c;
  auto p = std::make_unique<BlockedConv>();
  const int64_t oh = s.out_height(), ow = s.out_width();
  p->src = memory::desc({s.batch, s.in_channels, s.in_height, s.in_width}, DataType::f32,
                        x_blocked ? blocked : Tag::nchw);
  p->weights = weights_desc(s, Tag::oihw);
  p->bias = has_bias ? memory::desc({s.out_channels}, DataType::f32, Tag::x) : memory::desc();
  p->dst = memory::desc({s.batch, s.out_channels, oh, ow}, DataType::f32, blocked);
  const memory::dims padding_right = {
      (oh - 1) * s.stride_height + (s.kernel_height - 1) * s.dilation_height + 1 - s.in_height -
          s.padding_height,
      (ow - 1) * s.stride_width + (s.kernel_width - 1) * s.dilation_width + 1 - s.in_width - s.padding_width};
  // forward_training, as primitives_for (its comment says why).
  dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, p->src, any_like(p->weights),
      p->bias, p->dst, {s.stride_height, s.stride_width}, {s.dilation_height - 1, s.dilation_width - 1},
      {s.padding_height, s.padding_width}, padding_right);
  dnnl::post_ops post_ops;
  if (accumulate) post_ops.append_sum(1.0f);
  if (relu) post_ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  dnnl::primitive_attr attributes;
  attributes.set_post_ops(post_ops);
  const dnnl::convolution_forward::primitive_desc pd(desc, attributes, onednn_engine());
  p->primitive = dnnl::convolution_forward(pd);
  p->weights_bridge = LayoutBridge(p->weights, pd.weights_desc(), 1);
  slot = std::move(p);
  return *slot;
}

}  // namespace

void conv2d_forward_blocked_onednn(float* y, const float* x, bool x_blocked, const float* w, const float* b,
                                   const Conv2dShape& s, bool accumulate, bool relu, ReorderedWeights* kept) {
  BlockedConv& p = blocked_primitive_for(s, b != nullptr, x_blocked, accumulate, relu);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(p.src, onednn_engine(), const_cast<float*>(x))},
      {DNNL_ARG_WEIGHTS, kept ? p.weights_bridge.kept_input(w, *kept) : p.weights_bridge.input(w)},
      {DNNL_ARG_DST, memory(p.dst, onednn_engine(), y)}};
  if (b) args.emplace(DNNL_ARG_BIAS, memory(p.bias, onednn_engine(), const_cast<float*>(b)));
  p.primitive.execute(onednn_stream(), args);
  onednn_stream().wait();
}

void to_channel_blocked(float* blocked, const float* nchw, int64_t n, int64_t c, int64_t hw, int64_t block) {
  const int64_t groups = c / block;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      const float* from = nchw + (i * c + g * block) * hw;
      float* to = blocked + (i * groups + g) * hw * block;
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t k = 0; k < block; ++k) to[p * block + k] = from[k * hw + p];
    }
}

void from_channel_blocked(float* nchw, const float* blocked, int64_t n, int64_t c, int64_t hw,
                          int64_t block) {
  const int64_t groups = c / block;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      const float* from = blocked + (i * groups + g) * hw * block;
      float* to = nchw + (i * c + g * block) * hw;
      for (int64_t k = 0; k < block; ++k)
        for (int64_t p = 0; p < hw; ++p) to[k * hw + p] = from[p * block + k];
    }
}

void conv2d_backward_data_onednn(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  ConvPrimitives& p = primitives_for(s, false);
  {
    std::lock_guard lock(cache_mutex);
    if (!p.backward_data) {
      dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, any_like(p.src),
                                                 any_like(p.weights), any_like(p.dst), p.strides, p.dilates,
                                                 p.padding_left, p.padding_right);
      dnnl::convolution_backward_data::primitive_desc pd(desc, onednn_engine(), p.forward_pd);
      p.backward_data = ConvPrimitives::BackwardData{
          dnnl::convolution_backward_data(pd), LayoutBridge(p.dst, pd.diff_dst_desc(), 0),
          LayoutBridge(p.weights, pd.weights_desc(), 1), LayoutBridge(p.src, pd.diff_src_desc(), 2)};
    }
  }
  auto& bd = *p.backward_data;
  bd.primitive.execute(onednn_stream(), {{DNNL_ARG_DIFF_DST, bd.diff_dst.input(dy)},
                                         {DNNL_ARG_WEIGHTS, bd.weights.input(w)},
                                         {DNNL_ARG_DIFF_SRC, bd.diff_src.output(dx)}});
  bd.diff_src.finish(dx);
  onednn_stream().wait();
}

void conv2d_backward_weights_onednn(float* dw, float* db, const float* dy, const float* x,
                                    const Conv2dShape& s) {
  ConvPrimitives& p = primitives_for(s, db != nullptr);
  {
    std::lock_guard lock(cache_mutex);
    if (!p.backward_weights) {
      const bool is_narrow = s.in_channels / s.groups < 8;
      auto layout = [&](const memory::desc& plain) { return is_narrow ? plain : any_like(plain); };
      dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, layout(p.src),
                                                    layout(p.weights), p.bias, layout(p.dst), p.strides,
                                                    p.dilates, p.padding_left, p.padding_right);
      dnnl::convolution_backward_weights::primitive_desc pd(desc, onednn_engine(), p.forward_pd);
      p.backward_weights = ConvPrimitives::BackwardWeights{
          dnnl::convolution_backward_weights(pd), LayoutBridge(p.src, pd.src_desc(), 0),
          LayoutBridge(p.dst, pd.diff_dst_desc(), 1), LayoutBridge(p.weights, pd.diff_weights_desc(), 2)};
    }
  }
  auto& bw = *p.backward_weights;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, bw.src.input(x)},
                                       {DNNL_ARG_DIFF_DST, bw.diff_dst.input(dy)},
                                       {DNNL_ARG_DIFF_WEIGHTS, bw.diff_weights.output(dw)}};
  if (db) args.emplace(DNNL_ARG_DIFF_BIAS, memory(p.bias, onednn_engine(), db));
  bw.primitive.execute(onednn_stream(), args);
  bw.diff_weights.finish(dw);
  onednn_stream().wait();
}

}  // namespace qforge::kernels
