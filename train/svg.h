// A standalone SVG document written as text — a few lines, rectangles and labels, no
// plotting library — for the pictures qforge writes beside its results: the studies'
// charts (train/studies/charts.h) and a run's training curves (train/curves.h).
#pragma once

#include <cstdio>
#include <string>

namespace qforge::train {

// The header and a white background, then shapes in drawing order.
class SvgCanvas {
 public:
  SvgCanvas(double width, double height) {
    add("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
        "font-size=\"12\">\n<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n",
        width, height, width, height);
  }
  template <typename... Args>
  void add(const char* format, Args... args) {
    if constexpr (sizeof...(Args) == 0) {
      svg_ += format;  // no arguments: the text as it is (no % directives)
    } else {
      char buffer[512];
      std::snprintf(buffer, sizeof buffer, format, args...);
      svg_ += buffer;
    }
  }
  void line(double x1, double y1, double x2, double y2, const char* style) {
    add("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" %s/>\n", x1, y1, x2, y2, style);
  }
  std::string finish() { return svg_ + "</svg>\n"; }

 private:
  std::string svg_;
};

inline std::string escape_xml(const std::string& text) {
  std::string escaped;
  for (char c : text)
    escaped += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return escaped;
}

}  // namespace qforge::train
