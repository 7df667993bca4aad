// Optimizers and learning-rate schedules (train/optimizer.h) against PyTorch's rules.
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

TEST_CASE("schedules: warmup, step and cosine") {
  ScheduleConfig cosine{.type = "cosine", .warmup_epochs = 1};
  CHECK(scheduled_learning_rate(cosine, 0.1, 0.5, 5) == doctest::Approx(0.05));
  CHECK(scheduled_learning_rate(cosine, 0.1, 1.0, 5) == doctest::Approx(0.1));
  CHECK(scheduled_learning_rate(cosine, 0.1, 3.0, 5) == doctest::Approx(0.05));
  CHECK(scheduled_learning_rate(cosine, 0.1, 5.0, 5) == doctest::Approx(0.0));
  ScheduleConfig step{.type = "step", .step_size = 2, .gamma = 0.5};
  CHECK(scheduled_learning_rate(step, 0.1, 3.5, 5) == doctest::Approx(0.05));
}

TEST_CASE("SGD with momentum and Adam follow PyTorch's update rules") {
  // One parameter, gradient 1 each step. torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=False):
  // steps move by 0.1, 0.19, 0.271. Adam(lr=0.1): each early step moves by ~lr.
  Tensor w = Tensor::full({1}, 1.0f).set_requires_grad(true);
  Sgd sgd({w}, {.lr = 0.1, .momentum = 0.9});
  for (int i = 0; i < 3; ++i) {
    w.set_grad(Tensor::ones({1}));
    sgd.step();
  }
  CHECK(w.item() == doctest::Approx(1.0 - 0.1 - 0.19 - 0.271));
  Tensor v = Tensor::full({1}, 1.0f).set_requires_grad(true);
  Adam adam({v}, {.type = "adam", .lr = 0.1});
  v.set_grad(Tensor::ones({1}));
  adam.step();
  CHECK(v.item() == doctest::Approx(0.9).epsilon(1e-6));
}
