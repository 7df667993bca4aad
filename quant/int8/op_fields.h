// The fields of an op's entry in a .qfm header (Note [Model file]), read back. Each op's
// load() sits beside its save() and reads its entry through an OpReader, which checks
// every key's type and range (core/config_reader.h names the key; keys nobody read are
// errors), every tensor's dtype and shape against what the op implies, and that the op
// read every tensor stored for it — so a file that passes holds exactly one model.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "core/config_reader.h"
#include "core/serialize.h"
#include "quant/int8/requantize.h"

namespace qforge::quant::int8 {

class OpReader {
 public:
  // entry: ops.<i> of the header; tensors: that op's blobs, named without "ops.<i>.".
  OpReader(const nlohmann::json& entry, const TensorMap& tensors, const std::string& file,
           const std::string& where);

  ConfigReader& fields() { return reader_; }
  const std::string& context() const { return context_; }  // "model.qfm: ops.3", for messages
  const std::string& kind() const { return kind_; }

  int64_t extent(const std::string& key);                                  // required, 1 .. 2^16
  std::array<int64_t, 2> pair(const std::string& key, int64_t min_value);  // required [h, w]
  bool flag(const std::string& key);                                       // required true/false
  ActivationQuant activation(const std::string& key);                      // required {scale, ...}
  Tensor tensor(const std::string& key, DType dtype, const Shape& shape);  // required
  // A float tensor of any rank (a float layer's weights): rank checked, finite values.
  Tensor float_tensor(const std::string& key, int64_t rank);
  // Throws on unknown keys and on tensors the op did not read.
  void finish();

 private:
  ConfigReader reader_;
  const TensorMap& tensors_;
  std::string context_, kind_;
  std::set<std::string> tensors_read_;
};

// {scale, zero_point, quant_min, quant_max}: what activation() reads.
nlohmann::json to_json(const ActivationQuant& q);
// The same reads on any object of the header (an LSTM's per-layer entries).
std::array<int64_t, 2> read_pair(ConfigReader& r, const std::string& key, int64_t min_value);
ActivationQuant read_activation(ConfigReader& r, const std::string& key);

// Note [Packed weights] (quant/int8/integer_ops.h): int8 codes <-> 1/2/4-bit packed bytes.
// Code k stands for level quant_min + k·level_step (binary weights: 0 -> −1, 1 -> +1).
Tensor pack_weight(const Tensor& weight, const WeightRange& range, int bits);
Tensor unpack_weight(const Tensor& packed, const Shape& shape, const WeightRange& range, int bits,
                     const std::string& where);

// The smallest scale qforge writes (PyTorch's eps, FLT_EPSILON): observers and LSQ never go below
// it, so a file with a smaller one (1e-40, whose reciprocal overflows) is corrupt.
inline constexpr float kMinScale = 1.1920928955078125e-07f;

}  // namespace qforge::quant::int8
