// Note [Backends]: every kernel family with a fast path keeps a plain reference twin —
// serial loops from the definition, no oneDNN, no OpenBLAS, no intrinsics:
//   GEMM          kernels::gemm (oneDNN)       gemm_reference            test_gradients.cpp
//   conv2d        oneDNN                       conv2d_reference (on gemm_reference)
//                                                                        test_conv_backends.cpp
//   max pool, batch norm, LSTM cell            core/kernels/reference.h  test_backend_ops.cpp
//   fake quant    parallel blocks / channels   fake_quantize_reference   test_fake_quantize_backends.cpp
//   int8 ops      quant/int8/fast.cpp, gemm.cpp  quant/int8/reference.cpp  test_int8_backends.cpp
// Ops whose two paths are one call (conv2d, the int8 ops) take this enum and map it to a
// kernel in exactly one place (the op's .cpp); the others are compared by their tests.
#pragma once

namespace qforge {

enum class Backend { reference, fast };

}  // namespace qforge
