// A run's training curves (train/curves.h): curves.svg after every epoch, fp32 and QAT on
// one axis.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/file_io.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/curves.h"
#include "train/stages.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

namespace {
int64_t count(const std::string& text, const std::string& what) {
  int64_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("curves.svg shows every epoch of fp32 and QAT: loss and accuracy, train and test") {
  const std::string data = temp_folder("curves_data"), out = temp_folder("curves_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 3;
  source["quant"] = {{"qat", {{"epochs", 2}}}};
  run_qat(parse_config(source, "test.json"), false);
  const std::string svg = read_file(out + "/curves.svg");
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(count(svg, "class=\"curve\"") == 4);  // train/test loss, train/test accuracy
  CHECK(count(svg, "class=\"legend\"") == 4);
  CHECK(count(svg, "class=\"stage\"") == 1);  // where QAT starts
  // Each curve has a point per epoch: 3 fp32 + 2 QAT.
  const std::size_t first = svg.find("class=\"curve\"");
  const std::size_t points = svg.find("points=\"", first) + 8;
  const std::string list = svg.substr(points, svg.find('"', points) - points);
  CHECK(count(list, ",") == 5);
  // An empty history draws empty axes rather than failing.
  CHECK(training_curves_svg({}, "nothing").find("</svg>") != std::string::npos);
}
