// ONNX import: a float image classifier from another framework (PyTorch's torch.onnx.export,
// opset 11–17) as a qforge layer list and its weights, so qforge's PTQ, QAT, studies,
// convert and export run on it unchanged. The graph must be a chain from the one input to
// the one output, with residual blocks where a value forks and an Add joins the branches:
//   Conv, BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten,
//   Reshape to (N, features), Gemm, MatMul (+ Add of a bias), Add (residual, + Relu),
//   Identity and Dropout (inference: nothing)
// become the config's layers (conv2d, batchnorm2d, relu, maxpool2d, avgpool2d,
// adaptive_avgpool2d, flatten, linear, residual). Everything is read from untrusted bytes:
// every size is checked against its shape and bounded, every attribute's type and value
// checked, every input must be defined by an earlier node (no dangling value, no cycle),
// and every node must lie on the path. An error names the file and the node (its name and
// op_type) and says what is supported. Not imported: LSTMs (qforge's layer list has no
// LSTM yet), non-square kernels, asymmetric padding, ceil-mode pools.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/serialize.h"

namespace qforge::quant::onnx_io {

struct ImportedModel {
  nlohmann::json layers;  // a config's model.layers (train/config.h builds the model from it)
  TensorMap state;        // the state dict of the model those layers build
  Shape input_shape;      // (C,H,W) per sample
  int64_t classes = 0;    // the output's features
  int64_t opset = 0;
  std::string producer;  // "pytorch 1.13.1"
  int64_t nodes = 0;     // nodes read
};

ImportedModel import_onnx(const std::string& bytes, const std::string& path);

}  // namespace qforge::quant::onnx_io
