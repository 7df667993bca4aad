// Note [Backends]: every kernel family with a fast path keeps a plain reference one
// beside it. Callers pick with this enum; ops map it to a kernel in exactly one place
// (the op's .cpp). Tests run both and compare.
#pragma once

namespace qforge {

enum class Backend { reference, fast };

}  // namespace qforge
