#include "train/curves.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/file_io.h"
#include "train/svg.h"

namespace qforge::train {

namespace {

// One panel: a quantity against the epoch index, lo..hi on y.
struct Panel {
  double top, bottom, lo, hi;
  double y(double v) const { return bottom - (std::clamp(v, lo, hi) - lo) / (hi - lo) * (bottom - top); }
};
constexpr double kLeft = 70, kRight = 640;

void draw_panel(SvgCanvas& c, const Panel& p, const char* label, const char* format, double scale) {
  c.line(kLeft, p.bottom, kRight, p.bottom, "stroke=\"black\"");
  c.line(kLeft, p.top, kLeft, p.bottom, "stroke=\"black\"");
  for (int k = 0; k <= 4; ++k) {
    const double v = p.lo + (p.hi - p.lo) * k / 4, y = p.y(v);
    c.line(kLeft, y, kRight, y, "stroke=\"#ddd\"");
    c.add(format, kLeft - 6, y + 4, v * scale);
  }
  const double middle = (p.top + p.bottom) / 2;
  c.add("<text x=\"20\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.0f)\">%s</text>\n",
        middle, middle, label);
}

void draw_series(SvgCanvas& c, const Panel& p, const std::vector<nlohmann::json>& rows, const char* key,
                 const char* color, bool dashed, double x_step) {
  std::string points;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].contains(key) || !rows[i][key].is_number()) continue;
    char point[48];
    std::snprintf(point, sizeof point, "%s%.1f,%.1f", points.empty() ? "" : " ",
                  kLeft + x_step * static_cast<double>(i + 1), p.y(rows[i][key].get<double>()));
    points += point;
  }
  c.add("<polyline class=\"curve\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"%s\"/>\n", color,
        dashed ? " stroke-dasharray=\"5,4\"" : "", points.c_str());
}

}  // namespace

std::string training_curves_svg(const std::vector<nlohmann::json>& rows, const std::string& title) {
  SvgCanvas c(820, 560);
  c.add("<text x=\"%.0f\" y=\"28\" font-size=\"15\">Training curves: %s</text>\n", kLeft,
        escape_xml(title).c_str());
  double max_loss = 0.1;
  for (const auto& r : rows)
    for (const char* key : {"train_loss", "test_loss"})
      if (r.contains(key) && r[key].is_number()) max_loss = std::max(max_loss, r[key].get<double>());
  const Panel loss{50, 270, 0, max_loss * 1.05}, accuracy{310, 510, 0, 1};
  draw_panel(c, loss, "loss", "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", 1);
  draw_panel(c, accuracy, "accuracy (%)", "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n",
             100);
  const double x_step = (kRight - kLeft) / static_cast<double>(std::max<std::size_t>(rows.size(), 1));
  // Epoch ticks and the boundary where a stage (QAT) starts.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double x = kLeft + x_step * static_cast<double>(i + 1);
    c.add("<text x=\"%.1f\" y=\"528\" text-anchor=\"middle\">%lld</text>\n", x,
          static_cast<long long>(rows[i].value("epoch", int64_t{0})));
    if (i == 0)
      c.add("<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", kLeft + 4, loss.top + 12,
            escape_xml(rows[i].value("stage", "")).c_str());
    if (i > 0 && rows[i].value("stage", "") != rows[i - 1].value("stage", "")) {
      const double boundary = x - x_step / 2;
      c.line(boundary, loss.top, boundary, accuracy.bottom,
             "class=\"stage\" stroke=\"#888\" stroke-dasharray=\"2,3\"");
      c.add("<text x=\"%.1f\" y=\"%.0f\">%s</text>\n", boundary + 4, loss.top + 12,
            escape_xml(rows[i].value("stage", "")).c_str());
    }
  }
  c.add("<text x=\"%.0f\" y=\"550\" text-anchor=\"middle\">epoch (each stage counts its own)</text>\n",
        (kLeft + kRight) / 2);
  draw_series(c, loss, rows, "train_loss", "#1f77b4", true, x_step);
  draw_series(c, loss, rows, "test_loss", "#1f77b4", false, x_step);
  draw_series(c, accuracy, rows, "train_accuracy", "#d62728", true, x_step);
  draw_series(c, accuracy, rows, "test_accuracy", "#d62728", false, x_step);
  const char* legend[][3] = {{"#1f77b4", "5,4", "train loss"},
                             {"#1f77b4", "", "test loss"},
                             {"#d62728", "5,4", "train accuracy"},
                             {"#d62728", "", "test accuracy"}};
  for (int k = 0; k < 4; ++k) {
    const double y = 60 + 22 * k;
    c.add(
        "<line x1=\"660\" y1=\"%.0f\" x2=\"690\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\" "
        "stroke-dasharray=\"%s\"/>\n",
        y, y, legend[k][0], legend[k][1]);
    c.add("<text class=\"legend\" x=\"696\" y=\"%.0f\">%s</text>\n", y + 4, legend[k][2]);
  }
  return c.finish();
}

void write_training_curves(const std::string& dir, const std::string& title) {
  std::vector<nlohmann::json> rows;
  for (const char* file : {"/metrics.jsonl", "/metrics_qat.jsonl"}) {
    if (!std::filesystem::exists(dir + file)) continue;
    std::istringstream lines(read_file(dir + file));
    for (std::string line; std::getline(lines, line);)
      if (nlohmann::json row = nlohmann::json::parse(line, nullptr, false); row.is_object())
        rows.push_back(row);
  }
  write_file_atomically(dir + "/curves.svg", training_curves_svg(rows, title));
}

}  // namespace qforge::train
