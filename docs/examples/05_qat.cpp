// Chapter 5, QAT in practice: what prepare_qat does to lenet (fusion, quantizers around
// each fused run, BN folded into the conv), that the folded conv is the conv + BN it
// replaces, and the 4-bit recipe the project ships (configs/lenet_4bit.json).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/zoo.h"
#include "quant/bn_folding.h"
#include "quant/prepare.h"
#include "quant/qconfig.h"
#include "train/config.h"

using namespace qforge;

namespace {
void list_children(nn::Module& model) {
  for (const auto& [name, child] : model.children())
    std::printf(" %s:%s", name.c_str(), child->type_name().c_str());
  std::printf("\n");
}
}  // namespace

int main() {
  Generator generator(0);
  nn::ModulePtr lenet = nn::build_zoo_model("lenet", generator);
  // Give BN running statistics that are not the identity, as after training.
  lenet->train();
  for (int step = 0; step < 20; ++step) {
    NoGradGuard no_grad;
    lenet->forward(Tensor::randn({32, 1, 28, 28}, generator));
  }
  lenet->eval();
  std::printf("lenet:");
  list_children(*lenet);

  // BN folding: conv(x, W·f) + β + (b − μ)·f equals BN(conv(x, W, b)) in evaluation.
  auto& conv = dynamic_cast<nn::Conv2d&>(*lenet->children()[0].second);
  auto& bn = dynamic_cast<nn::BatchNorm2d&>(*lenet->children()[1].second);
  NoGradGuard no_grad;
  const Tensor x = Tensor::randn({4, 1, 28, 28}, generator);
  const Tensor reference = bn.forward(conv.forward(x));
  const auto [folded_weight, folded_bias] = quant::folded_weight_and_bias(conv, &bn);
  const Tensor folded = conv2d(x, folded_weight, folded_bias, conv.options);
  float largest = 0, worst = 0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    largest = std::max(largest, std::fabs(reference.data()[i]));
    worst = std::max(worst, std::fabs(folded.data()[i] - reference.data()[i]));
  }
  std::printf("conv 0 + BN 1 folded into one conv: outputs up to %.1f, the two agree to 1e-5: %s\n", largest,
              worst < 1e-5f ? "yes" : "no");

  auto prepared = quant::prepare_qat(lenet, quant::QuantSpec{});
  std::printf("\nafter prepare_qat (the default fbgemm recipe), the model's quantization points:\n");
  for (const auto& [name, module] : prepared->named_modules())
    if (name.find('.') == std::string::npos || module->type_name().rfind("Qat", 0) == 0 ||
        module->type_name() == "FakeQuantize")
      if (!name.empty() && name.find("weight_quant") == std::string::npos)
        std::printf("  %-28s %s\n", name.c_str(), module->type_name().c_str());

  std::ifstream file(QFORGE_SOURCE_DIR "/configs/lenet_4bit.json");
  const nlohmann::json config = nlohmann::json::parse(file);
  const train::QuantSection recipe = train::parse_quant_section(config["quant"], "configs/lenet_4bit.json");
  std::printf("\nthe 4-bit recipe (configs/lenet_4bit.json):\n");
  for (const auto* spec : {&recipe.spec.defaults.weight, &recipe.spec.defaults.activation})
    std::printf("  %-11s %d bits, %s, %s, observer %s, %s\n",
                spec == &recipe.spec.defaults.weight ? "weights" : "activations", spec->scheme.bits,
                spec->scheme.is_signed ? "signed" : "unsigned",
                spec->scheme.axis >= 0 ? "per channel" : "per tensor", spec->observer.to_string().c_str(),
                spec->is_learnable ? "learnable scale (LSQ)" : "observed scale");
  std::printf("  QAT: %lld epochs at lr %g from the fp32 model\n", static_cast<long long>(recipe.qat.epochs),
              recipe.qat.lr);
  return 0;
}
