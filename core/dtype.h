// Element types a Tensor can hold: float32 for training, int8/uint8/int32 for the
// integer inference path. Deliberately no float16/bfloat16/float64.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qforge {

enum class DType { f32, s8, u8, s32 };

constexpr std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::s8:
      return 1;
    case DType::u8:
      return 1;
    case DType::s32:
      return 4;
  }
  return 0;
}

constexpr const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::s8:
      return "s8";
    case DType::u8:
      return "u8";
    case DType::s32:
      return "s32";
  }
  return "?";
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::s8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::s32;
}

}  // namespace qforge
