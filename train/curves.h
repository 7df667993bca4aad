// A run's training curves (curves.svg beside metrics.jsonl): the loss and the accuracy per
// epoch, train and test, of every stage the folder holds — fp32, then QAT — on one epoch
// axis, with the stage boundary marked. fit() rewrites it after each epoch.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qforge::train {

// rows: metrics records in order ({"stage", "epoch", "train_loss", "train_accuracy",
// "test_loss", "test_accuracy"}); title: what was trained.
std::string training_curves_svg(const std::vector<nlohmann::json>& rows, const std::string& title);

// Reads <dir>/metrics.jsonl and <dir>/metrics_qat.jsonl (those present) and writes <dir>/curves.svg.
void write_training_curves(const std::string& dir, const std::string& title);

}  // namespace qforge::train
