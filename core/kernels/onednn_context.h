// The one oneDNN CPU engine of the process and a stream per thread, shared by every
// oneDNN kernel (fp32 conv now, int8 later).
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace qforge::kernels {

dnnl::engine& onednn_engine();
dnnl::stream& onednn_stream();

}  // namespace qforge::kernels
