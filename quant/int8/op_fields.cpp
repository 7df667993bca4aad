#include "quant/int8/op_fields.h"

#include <cmath>

namespace qforge::quant::int8 {

namespace {
constexpr int64_t kMaxExtent = 1 << 16;  // any one dimension a model file may claim
}

OpReader::OpReader(const nlohmann::json& entry, const TensorMap& tensors, const std::string& file,
                   const std::string& where)
    : reader_(entry, file, where), tensors_(tensors), context_(file + ": " + where) {
  reader_.raw("name"), reader_.raw("inputs");
  kind_ = reader_.string("op", "");
}

int64_t OpReader::extent(const std::string& key) {
  if (!reader_.has(key)) reader_.fail(key, "missing");
  const int64_t value = reader_.integer(key, 0, 1);
  if (value > kMaxExtent)
    reader_.fail(key, "expected at most " + std::to_string(kMaxExtent) + ", got " + std::to_string(value));
  return value;
}

std::array<int64_t, 2> read_pair(ConfigReader& reader_, const std::string& key, int64_t min_value) {
  if (!reader_.has(key)) reader_.fail(key, "missing");
  const std::vector<double> values = reader_.numbers(key, {});
  if (values.size() != 2) reader_.fail(key, "expected two integers [h, w]");
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    // checked before the cast: a double past int64's range is UB
    if (!(values[i] >= static_cast<double>(min_value) && values[i] <= kMaxExtent &&
          values[i] == std::floor(values[i])))
      reader_.fail(key, "expected integers in [" + std::to_string(min_value) + ", " +
                            std::to_string(kMaxExtent) + "]");
    out[i] = static_cast<int64_t>(values[i]);
  }
  return out;
}

std::array<int64_t, 2> OpReader::pair(const std::string& key, int64_t min_value) {
  return read_pair(reader_, key, min_value);
}

bool OpReader::flag(const std::string& key) {
  if (!reader_.has(key)) reader_.fail(key, "missing");
  return reader_.boolean(key, false);
}

ActivationQuant read_activation(ConfigReader& reader_, const std::string& key) {
  if (!reader_.has(key)) reader_.fail(key, "missing");
  ConfigReader r = reader_.object(key);
  ActivationQuant q;
  q.scale = static_cast<float>(r.number("scale", 0));
  if (!(std::isfinite(q.scale) && q.scale >= kMinScale))
    r.fail("scale", "expected a finite scale >= 1.19e-07 (FLT_EPSILON, the smallest an observer gives)");
  q.quant_min = static_cast<int32_t>(r.integer("quant_min", 0, 0));
  q.quant_max = static_cast<int32_t>(r.integer("quant_max", 255, 0));
  if (q.quant_max > 255 || q.quant_min >= q.quant_max)
    r.fail("quant_max", "expected 0 <= quant_min < quant_max <= 255");
  q.zero_point = static_cast<int32_t>(r.integer("zero_point", 0, q.quant_min));
  if (q.zero_point > q.quant_max) r.fail("zero_point", "expected a level within [quant_min, quant_max]");
  r.finish();
  return q;
}

ActivationQuant OpReader::activation(const std::string& key) { return read_activation(reader_, key); }

Tensor OpReader::tensor(const std::string& key, DType dtype, const Shape& shape) {
  tensors_read_.insert(key);
  auto it = tensors_.find(key);
  QF_CHECK(it != tensors_.end(), context_, ": tensor \"", key, "\" is missing");
  QF_CHECK(it->second.dtype() == dtype && it->second.shape() == shape, context_, ": tensor \"", key, "\" is ",
           dtype_name(it->second.dtype()), " ", it->second.shape(), ", expected ", dtype_name(dtype), " ",
           shape);
  if (dtype == DType::f32) {
    const float* v = it->second.data();
    for (int64_t i = 0; i < it->second.numel(); ++i)
      QF_CHECK(std::isfinite(v[i]), context_, ": tensor \"", key, "\" holds ", v[i], " at index ", i);
  }
  return it->second;
}

Tensor OpReader::float_tensor(const std::string& key, int64_t rank) {
  auto it = tensors_.find(key);
  QF_CHECK(it != tensors_.end() && it->second.dtype() == DType::f32 && it->second.dim() == rank, context_,
           ": tensor \"", key, "\" missing or not float of rank ", rank);
  for (int64_t e : it->second.shape())
    QF_CHECK(e >= 1 && e <= kMaxExtent, context_, ": tensor \"", key, "\" has shape ", it->second.shape());
  return tensor(key, DType::f32, it->second.shape());
}

void OpReader::finish() {
  for (const auto& [key, tensor] : tensors_)
    QF_CHECK(tensors_read_.count(key), context_, ": tensor \"", key, "\" belongs to no field of this ", kind_,
             " op");
  reader_.finish();
}

nlohmann::json to_json(const ActivationQuant& q) {
  return {{"scale", q.scale},
          {"zero_point", q.zero_point},
          {"quant_min", q.quant_min},
          {"quant_max", q.quant_max}};
}

Tensor pack_weight(const Tensor& weight, const WeightRange& range, int bits) {
  const int64_t n = weight.numel();
  Tensor packed = Tensor::zeros({(n * bits + 7) / 8}, DType::u8);
  const int8_t* w = weight.data_as<int8_t>();
  uint8_t* out = packed.data_as<uint8_t>();
  for (int64_t k = 0; k < n; ++k)
    out[k * bits / 8] |=
        static_cast<uint8_t>((w[k] - range.quant_min) / range.level_step() << (k * bits % 8));
  return packed;
}

Tensor unpack_weight(const Tensor& packed, const Shape& shape, const WeightRange& range, int bits,
                     const std::string& where) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  const int64_t levels = range.levels();
  const int32_t quant_min = range.quant_min, step = range.level_step();
  const uint8_t* in = packed.data_as<uint8_t>();
  Tensor weight = Tensor::empty(shape, DType::s8);
  int8_t* w = weight.data_as<int8_t>();
  const int mask = (1 << bits) - 1;
  for (int64_t k = 0; k < n; ++k) {
    const int code = (in[k * bits / 8] >> (k * bits % 8)) & mask;
    QF_CHECK(code < levels, where, ": packed weight ", k, " has code ", code, ", outside the ", levels,
             " levels of weight_range");
    w[k] = static_cast<int8_t>(quant_min + code * step);
  }
  QF_CHECK((n * bits) % 8 == 0 || (in[packed.size(0) - 1] >> ((n * bits) % 8)) == 0, where,
           ": the packed weight's unused bits are not zero");
  return weight;
}

}  // namespace qforge::quant::int8
