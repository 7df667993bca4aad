// dropout (inverted): in training, zero each element with probability p and scale the
// survivors by 1/(1-p); in evaluation, the identity. The mask comes from the caller's
// Generator so runs are reproducible.
#pragma once

#include "core/random.h"
#include "core/tensor.h"

namespace qforge {

Tensor dropout(const Tensor& x, float p, bool is_training, Generator& generator);

}  // namespace qforge
