// The integer model's ops (quant/int8/integer_model.h), each a thin shell around its
// kernels (quant/int8/kernels.h): it checks its input, allocates the output and calls the
// reference or the fast kernel. convert builds them; each op's load() rebuilds it from its
// .qfm entry, beside the save() that wrote it (quant/int8/op_fields.h), and its infer()
// says what it makes of its inputs, for the graph check.
//   integer_ops.cpp   quantize, dequantize, conv2d, linear, float_conv2d, float_linear
//   weightless_ops.cpp  relu, max/avg/adaptive pools, add, flatten
//   lstm_ops.h        the static and dynamic LSTM, dynamic linear
#pragma once

#include <memory>
#include <optional>

#include "core/ops/conv.h"
#include "core/ops/pool.h"
#include "quant/int8/integer_model.h"
#include "quant/int8/kernels.h"

namespace qforge::quant::int8 {

// float (N,C,H,W) images -> uint8 (N,H,W,C); float (N,F) or (N,T,F) -> uint8 of the same
// shape. A sequence model (an LSTM reading image rows) keeps the float layout: channels_last false.
class QuantizeOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "quantize";
  explicit QuantizeOp(ActivationQuant output, bool channels_last = true)
      : output_(output), channels_last_(channels_last) {}
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  const ActivationQuant& output() const { return output_; }
  bool channels_last() const { return channels_last_; }

 private:
  ActivationQuant output_;
  bool channels_last_;
};

// uint8 (N,H,W,C) -> float (N,C,H,W); uint8 (N,F) -> float (N,F).
class DequantizeOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "dequantize";
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
};

// What a conv/linear op is built from: weights quantized by the QAT model's weight
// quantizer, its scales, the float bias, and the input/output activation parameters
// (no output: float outputs).
struct LayerQuantization {
  Tensor weight;                        // int8: (O,C/g,KH,KW) or (N,K)
  WeightRange weight_range{-128, 127};  // the levels the weight quantizer used (its bits)
  std::vector<float> weight_scale;      // (O)
  std::vector<float> bias;              // (O) or empty
  ActivationQuant input;
  std::optional<ActivationQuant> output;
  bool has_relu = false;
};

// Note [Packed weights]
// In a .qfm, a conv2d or linear op whose weight range has at most 16 levels (4 bits or
// fewer) stores its weight packed: each weight as the code q − qmin in b = 1, 2 or 4 bits
// (the fewest that hold the range; 3-bit weights take 4), element k at bits k·b .. k·b+b−1
// of byte k·b/8 counting from the low bit, unused high bits of the last byte zero: a u8
// tensor of ⌈n·b/8⌉ bytes, and the op's entry says "packed_weight": {"bits": b}. The shape
// is the op's. Binary weights (levels −1 and +1 only: "binary": true beside weight_range) take
// one bit each, code 1 for +1. In memory weights stay int8, the kernels' layout: only the file shrinks (a
// 4-bit model to about half, a 2-bit one to about a quarter of its weight bytes). Packed
// by save_layer, unpacked and checked by load_layer (quant/int8/integer_ops.cpp).
// The bits of a packed code for `levels` levels: 1, 2 or 4; 0 for more than 16 (int8).
inline int packed_weight_bits(int64_t levels) {
  return levels <= 2 ? 1 : levels <= 4 ? 2 : levels <= 16 ? 4 : 0;
}

// The header fields and tensors of a conv2d or linear layer, both ways.
nlohmann::json save_layer(TensorMap& blobs, const std::string& prefix, const LayerQuantization& layer);
LayerQuantization load_layer(OpReader& reader, const Shape& weight_shape);

class ConvOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "conv2d";
  // shape.batch is ignored; in_height/in_width fix the input size.
  ConvOp(LayerQuantization layer, const Conv2dShape& shape);
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override { return layer_.weight.size_bytes() + 8 * shape_.out_channels; }
  const LayerQuantization& layer() const { return layer_; }
  const Conv2dShape& shape() const { return shape_; }

 private:
  LayerQuantization layer_;
  Conv2dShape shape_;
  OutputStage stage_;
  std::unique_ptr<fast::Conv2dLayer> fast_;
};

class LinearOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "linear";
  LinearOp(LayerQuantization layer);
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override { return layer_.weight.size_bytes() + 8 * layer_.weight.size(0); }
  const LayerQuantization& layer() const { return layer_; }

 private:
  LayerQuantization layer_;
  OutputStage stage_;
  std::unique_ptr<fast::LinearLayer> fast_;
};

// A conv or linear layer kept in float, on float values (N,C,H,W) / (N,F).
class FloatLayerOp : public IntegerOp {
 public:
  static constexpr const char* kConvKind = "float_conv2d";
  static constexpr const char* kLinearKind = "float_linear";
  // conv: weight (O,C/g,KH,KW) with options; linear: weight (N,K).
  FloatLayerOp(Tensor weight, Tensor bias, bool has_relu, std::optional<Conv2dOptions> conv_options);
  std::string kind() const override { return conv_options_ ? kConvKind : kLinearKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override { return weight_.size_bytes() + bias_.size_bytes(); }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined: none
  bool has_relu() const { return has_relu_; }
  const std::optional<Conv2dOptions>& conv_options() const { return conv_options_; }

 private:
  Tensor weight_, bias_;
  bool has_relu_;
  std::optional<Conv2dOptions> conv_options_;
};

class ReluOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "relu";
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
};

struct PoolGeometry {
  Pool2dOptions window;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg only
  int64_t divisor_override = 0;   // avg only
};

class PoolOp : public IntegerOp {
 public:
  static constexpr const char* kMaxKind = "max_pool2d";
  static constexpr const char* kAverageKind = "avg_pool2d";
  enum class Kind { max, average };
  PoolOp(Kind pool_kind, PoolGeometry geometry) : pool_kind_(pool_kind), geometry_(geometry) {}
  std::string kind() const override { return pool_kind_ == Kind::max ? kMaxKind : kAverageKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  Kind pool_kind() const { return pool_kind_; }
  const PoolGeometry& geometry() const { return geometry_; }

 private:
  // The output's (height, width) for an input of (height, width); zero when the window does not fit.
  std::pair<int64_t, int64_t> output_size(int64_t height, int64_t width) const;
  Kind pool_kind_;
  PoolGeometry geometry_;
};

class AdaptiveAvgPoolOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "adaptive_avg_pool2d";
  AdaptiveAvgPoolOp(int64_t out_height, int64_t out_width) : out_height_(out_height), out_width_(out_width) {}
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t out_height() const { return out_height_; }
  int64_t out_width() const { return out_width_; }

 private:
  int64_t out_height_, out_width_;
};

// Residual add of two uint8 values (+ ReLU), requantized to `output`.
class AddOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "add";
  AddOp(ActivationQuant output, bool has_relu) : output_(output), has_relu_(has_relu) {}
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  const ActivationQuant& output() const { return output_; }
  bool has_relu() const { return has_relu_; }

 private:
  ActivationQuant output_;
  bool has_relu_;
};

// (N,H,W,C) -> (N, H·W·C) without moving bytes: features in (h, w, c) order. convert
// permutes the next linear layer's weight columns from the float model's (c, h, w)
// order to match, so no transpose runs at inference.
class FlattenOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "flatten";
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
};

// Checks the ops share (integer_ops.cpp). For infer: one input that is uint8 (of `rank`
// dimensions per sample when rank > 0, quantized as `expected` when given), or float.
const ValueType& expect_quantized(const std::vector<const ValueType*>& inputs, int64_t rank = 0,
                                  const ActivationQuant* expected = nullptr);
const ValueType& expect_float(const std::vector<const ValueType*>& inputs, int64_t rank = 0);
// For run: one input; one uint8 input of `rank` dimensions (0: any).
const Value& only_input(const std::vector<const Value*>& inputs, const IntegerOp& op);
const Value& quantized_input(const std::vector<const Value*>& inputs, const IntegerOp& op, int64_t rank);
inline Tensor u8(const Shape& shape) { return Tensor::empty(shape, DType::u8); }

}  // namespace qforge::quant::int8
