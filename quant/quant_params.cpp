#include "quant/quant_params.h"

#include "core/error.h"

namespace qforge::quant {

QuantRange quant_range(int bits, bool is_signed, bool reduce_range, bool narrow_range) {
  QF_CHECK(bits >= 1 && bits <= 16, "quantization: bits must be in 1..16, got ", bits);
  QF_CHECK(!(reduce_range && bits < 2), "quantization: reduce_range needs at least 2 bits");
  const int effective = reduce_range ? bits - 1 : bits;
  QuantRange range = is_signed
                         ? QuantRange{-(int64_t{1} << (effective - 1)), (int64_t{1} << (effective - 1)) - 1}
                         : QuantRange{0, (int64_t{1} << effective) - 1};
  if (is_signed && effective == 1) range = {-1, 0};  // a signed single bit: {-1, 0}
  if (narrow_range && is_signed && range.quant_max > 0) range.quant_min = -range.quant_max;
  return range;
}

}  // namespace qforge::quant
