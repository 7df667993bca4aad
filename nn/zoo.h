// The model zoo, buildable by name (DESIGN.md; the nets of ../shared/peer/torch_peer.py):
//   jermmy   conv(1→40,k3) ReLU maxpool2 conv(40→40,k3,groups 20) ReLU maxpool2 fc(1000→10)
//   lenet    [conv(k5,p2) BN ReLU maxpool2] ×2 (32, 64 channels) fc(3136→128) ReLU fc(128→10)
//   resnet8, resnet20   CIFAR-style ResNet-(6n+2), n = 1, 3 (nn/resnet.h)
//   lstm     28 steps × 28 features → LSTM(128) → fc(128→10)
#pragma once

#include <string>
#include <vector>

#include "core/random.h"
#include "nn/module.h"

namespace qforge::nn {

struct ZooOptions {
  int64_t in_channels = 1, image_size = 28, num_classes = 10;
};

ModulePtr build_zoo_model(const std::string& name, Generator& generator, const ZooOptions& options = {});
const std::vector<std::string>& zoo_model_names();

}  // namespace qforge::nn
