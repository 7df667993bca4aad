// The per-layer sensitivity study and its mixed-precision suggestion (train/studies/sensitivity.h).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/config_reader.h"
#include "core/file_io.h"
#include "core/random.h"
#include "core/serialize.h"
#include "data/idx.h"
#include "quant/prepare.h"
#include "quant/qconfig.h"
#include "tests/temp_folder.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/model_files.h"
#include "train/optimizer.h"
#include "train/stages.h"
#include "train/studies/calibrate_compare.h"
#include "train/studies/sensitivity.h"
#include "train/studies/sweep.h"
#include "train/trainer.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

TEST_CASE(
    "sensitivity: only / all-but each layer, SQNRs, ranked; a mixed-precision config that reaches the "
    "target") {
  const std::string data = temp_folder("sensitivity_data"), out = temp_folder("sensitivity_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}, {"ptq", {{"calibration_batches", 4}}}};
  source["sensitivity"] = {{"bits", 2}};
  const std::vector<LayerSensitivity> layers =
      run_sensitivity(parse_config(source, "sensitivity.json"), false, 0.99);
  REQUIRE(layers.size() == 3);  // the conv and the linear layer of small_config, and the input
  for (std::size_t i = 0; i + 1 < layers.size(); ++i)
    CHECK(layers[i].only_accuracy <= layers[i + 1].only_accuracy);
  for (const LayerSensitivity& s : layers) {
    CAPTURE(s.layer);
    if (s.type == "Input") {
      CHECK(std::isnan(s.weight_sqnr));  // no weights
    } else {
      CHECK(s.weight_sqnr > 0);
      CHECK(s.weight_sqnr < 30);  // 2 bits
    }
    CHECK(std::isfinite(s.output_sqnr));  // every layer's own output, all quantized vs fused float
    CHECK(s.output_sqnr > 0);
    CHECK(s.output_sqnr < 30);  // 2 bits
    CHECK(std::isfinite(s.logits_sqnr));
  }
  const json report = json::parse(read_file(out + "/sensitivity.json"));
  CHECK(report["layers"].size() == 3);
  CHECK(report["suggestion"]["target_accuracy"] == 0.99);
  // The suggestion is a config qforge runs: its overrides name real layers at 8 bits.
  const RunConfig suggested = parse_config(json::parse(read_file(out + "/suggested.json")), "suggested.json");
  CHECK(suggested.quant.spec.defaults.weight.scheme.bits == 2);
  for (const quant::QConfigOverride& o : suggested.quant.spec.overrides)
    CHECK(o.qconfig.weight.scheme.bits == 8);
  CHECK(read_file(out + "/sensitivity.svg").find("class=\"bar\"") != std::string::npos);
}
