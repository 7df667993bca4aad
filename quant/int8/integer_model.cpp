// The integer model's graph walk and its .qfm file.
//
// Note [Model file]
// A .qfm is a tensor file (core/serialize.h: magic, checksummed JSON header, checksummed
// blobs, written atomically) whose metadata is
//   {"kind": "integer_model", "format_version": 2, "input_shape": [C,H,W],
//    "ops": [{"op": "conv2d", "name": "0", "inputs": [1], ...parameters}, ...],
//    "source": {...what it was converted from}}
// and whose tensors are the ops' weights, named "ops.<i>.<what>". Loading trusts nothing
// past the checksums either: every field of every op is read with its type and range
// checked (each op's load(), quant/int8/op_fields.h), every tensor's dtype, shape and
// values against the op (a bias the header declares must be there, and none it does not),
// each op's inputs must be earlier values, and then the graph is checked as a whole
// (IntegerModel::check): every op gets the kind of value it was built for — uint8 or
// float, the shape, the scale and zero point — and the model ends in float. So a file
// that passes is a model that runs. Version 2 added the "bias" flags; version 1 files are
// refused with a request to convert again.
// Conv and linear weights of 4 bits or fewer are stored packed (Note [Packed weights],
// quant/int8/integer_ops.h).
#include "quant/int8/integer_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/config_reader.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/lstm_ops.h"
#include "quant/int8/op_fields.h"

namespace qforge::quant::int8 {

namespace {
constexpr int kFormatVersion = 2;
}

int IntegerModel::add(std::unique_ptr<IntegerOp> op, std::vector<int> inputs, std::string name) {
  const int id = static_cast<int>(ops_.size()) + 1;
  for (int input : inputs)
    QF_CHECK(input >= 0 && input < id, "integer model: op ", id - 1, " (", op->kind(), ") reads value ",
             input, ", which is not computed before it");
  op->inputs = std::move(inputs);
  op->name = std::move(name);
  ops_.push_back(std::move(op));
  return id;
}

std::vector<Value> IntegerModel::run_all(const Tensor& images, Backend backend,
                                         std::vector<double>* seconds) const {
  QF_CHECK(!ops_.empty(), "integer model: no ops");
  QF_CHECK(images.dtype() == DType::f32 && images.dim() == static_cast<int64_t>(input_shape.size()) + 1,
           "integer model: expected float input (N,", shape_to_string(input_shape).substr(1), ", got ",
           images.shape());
  for (std::size_t i = 0; i < input_shape.size(); ++i)
    QF_CHECK(images.size(static_cast<int64_t>(i) + 1) == input_shape[i], "integer model: expected input (N,",
             shape_to_string(input_shape).substr(1), ", got ", images.shape());
  std::vector<Value> values{{images, {}}};
  values.reserve(ops_.size() + 1);
  for (const auto& op : ops_) {
    std::vector<const Value*> inputs;
    for (int id : op->inputs) inputs.push_back(&values[id]);
    const auto start = std::chrono::steady_clock::now();
    values.push_back(op->run(inputs, backend));
    if (seconds)
      seconds->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return values;
}

Tensor IntegerModel::forward(const Tensor& images, Backend backend) const {
  Value last = std::move(run_all(images, backend).back());
  QF_CHECK(last.data.dtype() == DType::f32, "integer model: the last op (", ops_.back()->kind(),
           ") leaves uint8 values; a model ends with dequantize or a float layer");
  return last.data;
}

int64_t IntegerModel::weight_bytes() const {
  int64_t total = 0;
  for (const auto& op : ops_) total += op->weight_bytes();
  return total;
}

void IntegerModel::save(const std::string& path, const nlohmann::json& source_info) const {
  TensorMap blobs;
  nlohmann::json ops = nlohmann::json::array();
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    nlohmann::json entry = ops_[i]->save(blobs, "ops." + std::to_string(i) + ".");
    entry["op"] = ops_[i]->kind();
    entry["name"] = ops_[i]->name;
    entry["inputs"] = ops_[i]->inputs;
    ops.push_back(entry);
  }
  save_tensor_file(path, blobs,
                   {{"kind", "integer_model"},
                    {"format_version", kFormatVersion},
                    {"input_shape", std::vector<int64_t>(input_shape)},
                    {"ops", ops},
                    {"source", source_info.is_null() ? source : source_info}});
}

IntegerModel IntegerModel::load(const std::string& path) { return from_file(load_tensor_file(path), path); }

const std::vector<std::pair<std::string, IntegerModel::Loader>>& IntegerModel::op_kinds() {
  static const std::vector<std::pair<std::string, Loader>> kinds{
      {QuantizeOp::kKind, QuantizeOp::load},
      {DequantizeOp::kKind, DequantizeOp::load},
      {ConvOp::kKind, ConvOp::load},
      {LinearOp::kKind, LinearOp::load},
      {FloatLayerOp::kConvKind, FloatLayerOp::load},
      {FloatLayerOp::kLinearKind, FloatLayerOp::load},
      {ReluOp::kKind, ReluOp::load},
      {PoolOp::kMaxKind, PoolOp::load},
      {PoolOp::kAverageKind, PoolOp::load},
      {AdaptiveAvgPoolOp::kKind, AdaptiveAvgPoolOp::load},
      {AddOp::kKind, AddOp::load},
      {FlattenOp::kKind, FlattenOp::load},
      {DynamicLinearOp::kKind, DynamicLinearOp::load},
      {DynamicLstmOp::kKind, DynamicLstmOp::load},
      {StaticLstmOp::kKind, StaticLstmOp::load}};
  return kinds;
}

void IntegerModel::check() const { value_types(); }

std::vector<ValueType> IntegerModel::value_types() const {
  QF_CHECK(!ops_.empty(), "integer model: no ops");
  std::vector<ValueType> types{{false, {}, input_shape}};
  types.reserve(ops_.size() + 1);
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const IntegerOp& op = *ops_[i];
    std::vector<const ValueType*> inputs;
    for (int id : op.inputs) inputs.push_back(&types[id]);
    try {
      types.push_back(op.infer(inputs));
    } catch (const Error& error) {
      QF_FAIL("ops.", i, " (", op.kind(), op.name.empty() ? "" : ", " + op.name, "): ", error.what());
    }
  }
  QF_CHECK(!types.back().is_quantized, "ops.", ops_.size() - 1, " (", ops_.back()->kind(),
           "): the model ends in ", describe(types.back()),
           "; it must end in float (a dequantize or a float layer)");
  return types;
}

IntegerModel IntegerModel::from_file(const TensorFile& file, const std::string& path) {
  const nlohmann::json& m = file.metadata;
  QF_CHECK(m.is_object() && m.contains("kind") && m["kind"] == "integer_model", path,
           ": not an integer model (a .qf float/QAT model? convert it with `qforge convert`)");
  QF_CHECK(m.contains("format_version") && m["format_version"].is_number_integer(), path,
           ": no format_version");
  const int64_t version = m["format_version"];
  QF_CHECK(version == kFormatVersion, path, ": integer model format version ", version,
           "; this qforge reads version ", kFormatVersion,
           version < kFormatVersion ? " — convert the QAT/PTQ model again with `qforge convert`" : "");
  IntegerModel model;
  ConfigReader header(m, path, "");
  header.raw("kind"), header.raw("format_version");
  model.source = header.raw("source");
  for (double extent : header.numbers("input_shape", {})) {
    if (!(extent >= 1 && extent <= (1 << 20) && extent == std::floor(extent)))
      header.fail("input_shape", "expected positive integers");
    model.input_shape.push_back(static_cast<int64_t>(extent));
  }
  if (model.input_shape.size() < 1 || model.input_shape.size() > 3)
    header.fail("input_shape", "expected 1 to 3 extents");
  const nlohmann::json& ops = header.raw("ops");
  if (!ops.is_array() || ops.empty()) header.fail("ops", "expected a non-empty list of ops");
  header.finish();
  std::vector<std::string> kind_names;
  for (const auto& [name, loader] : op_kinds()) kind_names.push_back(name);
  std::size_t blobs_used = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::string where = "ops." + std::to_string(i);
    if (!ops[i].is_object()) QF_FAIL(path, ": ", where, ": expected an object");
    TensorMap own = tensors_under(file.tensors, where + ".");
    blobs_used += own.size();
    ConfigReader entry(ops[i], path, where);
    const std::string name = entry.string("name", "");
    const std::string kind = entry.choice("op", "", kind_names);
    std::vector<int> inputs;
    for (double id : entry.numbers("inputs", {})) {
      if (!(id >= 0 && id <= static_cast<double>(i) && id == std::floor(id)))
        entry.fail("inputs", "expected ids of earlier values (0.." + std::to_string(i) + ")");
      inputs.push_back(static_cast<int>(id));
    }
    try {
      OpReader reader(ops[i], own, path, where);
      auto loader =
          std::find_if(op_kinds().begin(), op_kinds().end(), [&](const auto& k) { return k.first == kind; });
      std::unique_ptr<IntegerOp> op = loader->second(reader);
      reader.finish();
      model.add(std::move(op), inputs, name);
    } catch (const Error& error) {
      const std::string message = error.what();
      if (message.rfind(path, 0) == 0) throw;
      QF_FAIL(path, ": ", where, " (", name, "): ", message);
    }
  }
  QF_CHECK(blobs_used == file.tensors.size(), path, ": ", file.tensors.size() - blobs_used,
           " tensors belong to no op");
  try {
    model.check();
  } catch (const Error& error) {
    QF_FAIL(path, ": ", error.what());
  }
  return model;
}

}  // namespace qforge::quant::int8
