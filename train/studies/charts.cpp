#include "train/studies/charts.h"

#include <algorithm>
#include <cstdio>

#include "train/svg.h"

namespace qforge::train {

namespace {

// The sweep chart's plot area on its 820×450 canvas: bits lo..hi along x 70..690,
// accuracy 0..1 along y 390..50.
struct BitsAxis {
  int lo, hi;
  double x(double bits) const { return kLeft + (bits - lo) / (hi - lo) * (kRight - kLeft); }
  static double y(double accuracy) { return kBottom - accuracy * (kBottom - kTop); }
  static constexpr double kLeft = 70, kRight = 690, kTop = 50, kBottom = 390;
};

double mean_of(const std::vector<double>& values) {  // as the tables compute it
  double mean = 0;
  for (double v : values) mean += v / static_cast<double>(values.size());
  return mean;
}

// Frame, grid, ticks and the axis labels.
void draw_axes(SvgCanvas& c, const BitsAxis& axis, const std::vector<int>& widths, const char* x_label,
               const std::string& title) {
  c.add("<text x=\"%.0f\" y=\"28\" font-size=\"15\">Accuracy vs bit width: %s</text>\n", BitsAxis::kLeft,
        escape_xml(title).c_str());
  c.line(BitsAxis::kLeft, BitsAxis::kBottom, BitsAxis::kRight, BitsAxis::kBottom, "stroke=\"black\"");
  c.line(BitsAxis::kLeft, BitsAxis::kTop, BitsAxis::kLeft, BitsAxis::kBottom, "stroke=\"black\"");
  for (int percent = 0; percent <= 100; percent += 10) {
    const double y = BitsAxis::y(percent / 100.0);
    c.line(BitsAxis::kLeft, y, BitsAxis::kRight, y, "stroke=\"#ddd\"");
    c.add("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", BitsAxis::kLeft - 6, y + 4, percent);
  }
  for (int w : widths)
    c.add("<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", axis.x(w), BitsAxis::kBottom + 18,
          w);
  c.add("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
        (BitsAxis::kLeft + BitsAxis::kRight) / 2, BitsAxis::kBottom + 40, x_label);
  const double middle = (BitsAxis::kTop + BitsAxis::kBottom) / 2;
  c.add(
      "<text x=\"20\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.0f)\">test accuracy "
      "(%%)</text>\n",
      middle, middle);
}

// One method: error bars over the seeds' min..max at each width, the means joined.
void draw_method(SvgCanvas& c, const BitsAxis& axis, const std::vector<std::vector<double>>& per_width,
                 const std::vector<int>& widths, const char* color) {
  std::string points;
  char style[64], point[48];
  std::snprintf(style, sizeof style, "stroke=\"%s\"", color);
  for (std::size_t i = 0; i < widths.size(); ++i) {
    if (per_width[i].empty()) continue;
    const auto [low, high] = std::minmax_element(per_width[i].begin(), per_width[i].end());
    const double x = axis.x(widths[i]), mean = mean_of(per_width[i]);
    c.line(x, BitsAxis::y(*low), x, BitsAxis::y(*high), style);
    c.line(x - 4, BitsAxis::y(*low), x + 4, BitsAxis::y(*low), style);
    c.line(x - 4, BitsAxis::y(*high), x + 4, BitsAxis::y(*high), style);
    c.add("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, BitsAxis::y(mean), color);
    std::snprintf(point, sizeof point, "%s%.1f,%.1f", points.empty() ? "" : " ", x, BitsAxis::y(mean));
    points += point;
  }
  c.add("<polyline class=\"method\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", color,
        points.c_str());
}

void draw_legend_entry(SvgCanvas& c, double y, const char* style, const std::string& label) {
  c.line(BitsAxis::kRight + 15, y, BitsAxis::kRight + 40, y, style);
  c.add("<text class=\"legend\" x=\"%.0f\" y=\"%.0f\">%s</text>\n", BitsAxis::kRight + 46, y + 4,
        escape_xml(label).c_str());
}

}  // namespace

std::string sweep_svg(const std::vector<SweepRecord>& records, double fp32_accuracy,
                      const std::string& title) {
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                          "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  // The swept side: weights, activations, or both (they are equal then).
  bool weights_vary = false, activations_vary = false;
  for (const SweepRecord& r : records) {
    weights_vary = weights_vary || r.weight_bits != records.front().weight_bits;
    activations_vary = activations_vary || r.activation_bits != records.front().activation_bits;
  }
  auto width_of = [&](const SweepRecord& r) {
    return weights_vary || !activations_vary ? r.weight_bits : r.activation_bits;
  };
  std::vector<std::string> methods;
  std::vector<int> widths;
  for (const SweepRecord& r : records) {
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
    if (std::find(widths.begin(), widths.end(), width_of(r)) == widths.end()) widths.push_back(width_of(r));
  }
  std::sort(widths.begin(), widths.end());
  const int lo = widths.empty() ? 1 : widths.front();
  const BitsAxis axis{lo, widths.empty() ? 8 : std::max(widths.back(), lo + 1)};
  SvgCanvas chart(820, 450);
  draw_axes(chart, axis, widths,
            weights_vary && activations_vary ? "bits (weights and activations)"
            : activations_vary               ? "activation bits"
                                             : "weight bits",
            title);
  const char* dashed = "stroke=\"black\" stroke-dasharray=\"6,4\"";
  if (fp32_accuracy > 0)
    chart.line(BitsAxis::kLeft, BitsAxis::y(fp32_accuracy), BitsAxis::kRight, BitsAxis::y(fp32_accuracy),
               dashed);
  double legend_y = BitsAxis::kTop + 10;
  for (std::size_t m = 0; m < methods.size(); ++m, legend_y += 20) {
    std::vector<std::vector<double>> per_width(widths.size());
    for (const SweepRecord& r : records)
      if (r.method == methods[m] && r.error.empty())
        per_width[std::find(widths.begin(), widths.end(), width_of(r)) - widths.begin()].push_back(
            r.accuracy);
    draw_method(chart, axis, per_width, widths, colors[m % 8]);
    draw_legend_entry(chart, legend_y,
                      (std::string("stroke=\"") + colors[m % 8] + "\" stroke-width=\"2\"").c_str(),
                      methods[m]);
  }
  if (fp32_accuracy > 0) {
    char label[32];
    std::snprintf(label, sizeof label, "fp32 %.1f%%", 100 * fp32_accuracy);
    draw_legend_entry(chart, legend_y, dashed, label);
  }
  return chart.finish();
}

// Accuracy lost per layer when only it is quantized, as horizontal bars, most first.
std::string sensitivity_svg(const std::vector<LayerSensitivity>& layers, double fp32_accuracy, int bits,
                            const std::string& title) {
  const double height = 70 + 24.0 * static_cast<double>(layers.size());
  double largest = 0.001;
  for (const LayerSensitivity& s : layers) largest = std::max(largest, fp32_accuracy - s.only_accuracy);
  SvgCanvas c(820, height + 30);
  c.add("<text x=\"10\" y=\"24\" font-size=\"15\">Accuracy lost with only this layer at %d bits: %s</text>\n",
        bits, escape_xml(title).c_str());
  const double left = 240, right = 760;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const double y = 50 + 24.0 * static_cast<double>(i),
                 lost = std::max(0.0, fp32_accuracy - layers[i].only_accuracy);
    c.add("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s</text>\n", left - 8, y + 14,
          escape_xml(layers[i].layer + " (" + layers[i].type + ")").c_str());
    c.add("<rect class=\"bar\" x=\"%.0f\" y=\"%.0f\" width=\"%.1f\" height=\"18\" fill=\"#d62728\"/>\n", left,
          y, std::max(1.0, lost / largest * (right - left)));
    c.add("<text x=\"%.1f\" y=\"%.0f\">%.2f</text>\n", left + lost / largest * (right - left) + 4, y + 14,
          100 * lost);
  }
  c.line(left, 45, left, height, "stroke=\"black\"");
  c.add(
      "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">test accuracy lost (points, vs fp32 "
      "%.2f%%)</text>\n",
      (left + right) / 2, height + 20, 100 * fp32_accuracy);
  return c.finish();
}

std::string compare_svg(const std::vector<SweepRecord>& records, double fp32_accuracy,
                        const std::string& title) {
  std::vector<std::string> methods;
  for (const SweepRecord& r : records)
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
  // The y axis spans the results (and fp32) with a margin: the differences are small.
  double lo = fp32_accuracy > 0 ? fp32_accuracy : 1.0, hi = fp32_accuracy;
  for (const SweepRecord& r : records)
    if (r.error.empty()) lo = std::min(lo, r.accuracy), hi = std::max(hi, r.accuracy);
  const double margin = std::max(0.002, (hi - lo) * 0.1);
  lo = std::max(0.0, lo - margin), hi = std::min(1.0, hi + margin);
  constexpr double kLeft = 70, kRight = 790, kTop = 50, kBottom = 330;
  auto y_of = [&](double a) { return kBottom - (a - lo) / (hi - lo) * (kBottom - kTop); };
  const double slot = (kRight - kLeft) / static_cast<double>(std::max<std::size_t>(methods.size(), 1));
  SvgCanvas c(820, 440);
  const int bits = records.empty() ? 8 : records.front().activation_bits;
  c.add(
      "<text x=\"%.0f\" y=\"28\" font-size=\"15\">PTQ accuracy per calibration method at %d bits: "
      "%s</text>\n",
      kLeft, bits, escape_xml(title).c_str());
  c.line(kLeft, kBottom, kRight, kBottom, "stroke=\"black\"");
  c.line(kLeft, kTop, kLeft, kBottom, "stroke=\"black\"");
  for (int tick = 0; tick <= 5; ++tick) {
    const double a = lo + (hi - lo) * tick / 5.0;
    c.line(kLeft, y_of(a), kRight, y_of(a), "stroke=\"#ddd\"");
    c.add("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", kLeft - 6, y_of(a) + 4, 100 * a);
  }
  c.add(
      "<text x=\"20\" y=\"190\" text-anchor=\"middle\" transform=\"rotate(-90 20 190)\">test accuracy "
      "(%)</text>\n");
  if (fp32_accuracy > 0) {
    c.line(kLeft, y_of(fp32_accuracy), kRight, y_of(fp32_accuracy),
           "stroke=\"black\" stroke-dasharray=\"6,4\"");
    c.add("<text class=\"legend\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">fp32 %.2f%%</text>\n", kRight,
          y_of(fp32_accuracy) - 5, 100 * fp32_accuracy);
  }
  for (std::size_t m = 0; m < methods.size(); ++m) {
    std::vector<double> v;
    for (const SweepRecord& r : records)
      if (r.method == methods[m] && r.error.empty()) v.push_back(r.accuracy);
    const double x = kLeft + slot * (static_cast<double>(m) + 0.5), half = std::min(18.0, slot / 4);
    c.add("<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" transform=\"rotate(-35 %.1f %.0f)\">%s</text>\n",
          x, kBottom + 16, x, kBottom + 16, escape_xml(methods[m]).c_str());
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    auto quantile = [&](double q) {  // linear interpolation between order statistics
      const double at = q * static_cast<double>(v.size() - 1);
      const auto below = static_cast<std::size_t>(at);
      return below + 1 < v.size() ? v[below] + (at - static_cast<double>(below)) * (v[below + 1] - v[below])
                                  : v[below];
    };
    const char* stroke = "stroke=\"#1f4e79\"";
    c.line(x, y_of(v.front()), x, y_of(quantile(0.25)), stroke);
    c.line(x, y_of(quantile(0.75)), x, y_of(v.back()), stroke);
    c.line(x - half / 2, y_of(v.front()), x + half / 2, y_of(v.front()), stroke);
    c.line(x - half / 2, y_of(v.back()), x + half / 2, y_of(v.back()), stroke);
    c.add("<rect class=\"box\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#9ecae1\" %s/>\n",
          x - half, y_of(quantile(0.75)), 2 * half,
          std::max(0.5, y_of(quantile(0.25)) - y_of(quantile(0.75))), stroke);
    c.line(x - half, y_of(quantile(0.5)), x + half, y_of(quantile(0.5)),
           "stroke=\"#08306b\" stroke-width=\"2\"");
    c.add("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#d62728\"/>\n", x, y_of(mean_of(v)));
  }
  return c.finish();
}

}  // namespace qforge::train
