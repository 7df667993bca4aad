// The integer model's ops (quant/int8/integer_model.h), each a thin shell around its
// kernels (quant/int8/kernels.h): it checks its input, allocates the output and calls the
// reference or the fast kernel. convert builds them; load_op rebuilds them from a .qfm
// header, checking every field (the file is untrusted).
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
  explicit QuantizeOp(ActivationQuant output, bool channels_last = true)
      : output_(output), channels_last_(channels_last) {}
  std::string kind() const override { return "quantize"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  const ActivationQuant& output() const { return output_; }

 private:
  ActivationQuant output_;
  bool channels_last_;
};

// uint8 (N,H,W,C) -> float (N,C,H,W); uint8 (N,F) -> float (N,F).
class DequantizeOp : public IntegerOp {
 public:
  std::string kind() const override { return "dequantize"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
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
// is the op's. In memory weights stay int8, the kernels' layout: only the file shrinks (a
// 4-bit model to about half, a 2-bit one to about a quarter of its weight bytes). Packed
// by the ops' save, unpacked and checked by load_op (ops_load.cpp).
// The bits of a packed code for `levels` levels: 1, 2 or 4; 0 for more than 16 (int8).
inline int packed_weight_bits(int64_t levels) {
  return levels <= 2 ? 1 : levels <= 4 ? 2 : levels <= 16 ? 4 : 0;
}

class ConvOp : public IntegerOp {
 public:
  // shape.batch is ignored; in_height/in_width fix the input size.
  ConvOp(LayerQuantization layer, const Conv2dShape& shape);
  std::string kind() const override { return "conv2d"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
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
  LinearOp(LayerQuantization layer);
  std::string kind() const override { return "linear"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  int64_t weight_bytes() const override { return layer_.weight.size_bytes() + 8 * layer_.weight.size(0); }
  const LayerQuantization& layer() const { return layer_; }

 private:
  LayerQuantization layer_;
  OutputStage stage_;
  std::unique_ptr<fast::LinearLayer> fast_;
};

class ReluOp : public IntegerOp {
 public:
  std::string kind() const override { return "relu"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
};

struct PoolGeometry {
  Pool2dOptions window;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg only
  int64_t divisor_override = 0;   // avg only
};

class PoolOp : public IntegerOp {
 public:
  enum class Kind { max, average };
  PoolOp(Kind pool_kind, PoolGeometry geometry) : pool_kind_(pool_kind), geometry_(geometry) {}
  std::string kind() const override { return pool_kind_ == Kind::max ? "max_pool2d" : "avg_pool2d"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;

 private:
  Kind pool_kind_;
  PoolGeometry geometry_;
};

class AdaptiveAvgPoolOp : public IntegerOp {
 public:
  AdaptiveAvgPoolOp(int64_t out_height, int64_t out_width) : out_height_(out_height), out_width_(out_width) {}
  std::string kind() const override { return "adaptive_avg_pool2d"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;

 private:
  int64_t out_height_, out_width_;
};

// Residual add of two uint8 values (+ ReLU), requantized to `output`.
class AddOp : public IntegerOp {
 public:
  AddOp(ActivationQuant output, bool has_relu) : output_(output), has_relu_(has_relu) {}
  std::string kind() const override { return "add"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;

 private:
  ActivationQuant output_;
  bool has_relu_;
};

// (N,H,W,C) -> (N, H·W·C) without moving bytes: features in (h, w, c) order. convert
// permutes the next linear layer's weight columns from the float model's (c, h, w)
// order to match, so no transpose runs at inference.
class FlattenOp : public IntegerOp {
 public:
  std::string kind() const override { return "flatten"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap&, const std::string&) const override { return nlohmann::json::object(); }
};

// A conv or linear layer kept in float, on float values (N,C,H,W) / (N,F).
class FloatLayerOp : public IntegerOp {
 public:
  // conv: weight (O,C/g,KH,KW) with options; linear: weight (N,K).
  FloatLayerOp(Tensor weight, Tensor bias, bool has_relu, std::optional<Conv2dOptions> conv_options);
  std::string kind() const override { return conv_options_ ? "float_conv2d" : "float_linear"; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  int64_t weight_bytes() const override { return weight_.size_bytes() + bias_.size_bytes(); }

 private:
  Tensor weight_, bias_;
  bool has_relu_;
  std::optional<Conv2dOptions> conv_options_;
};

// Rebuilds an op from its header entry; `where` names it in messages ("model.qfm: ops.3").
std::unique_ptr<IntegerOp> load_op(const nlohmann::json& entry, const TensorMap& blobs,
                                   const std::string& file, const std::string& where);

// {scale, zero_point, quant_min, quant_max} <-> JSON, checked on the way in.
nlohmann::json to_json(const ActivationQuant& q);

}  // namespace qforge::quant::int8
