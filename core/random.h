// Generator: the one seeded source of randomness (init, shuffles, dropout, augmentation).
// Our own normal/uniform transforms over a 64-bit engine so a seed gives the same
// numbers with any standard library. Not cryptographic; not shared between threads.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace qforge {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 24 random bits, the resolution of a float.
  float uniform() { return static_cast<float>(engine_() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float low, float high) { return low + (high - low) * uniform(); }
  // Standard normal by Box–Muller; the second value of each pair is cached.
  float normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return engine_() % n; }
  // The whole state as text (the engine's standard serialization and the cached normal),
  // for checkpoints; set_state throws qforge::Error on text it did not write.
  std::string state() const;
  void set_state(const std::string& text);

 private:
  std::mt19937_64 engine_;
  bool has_cached_normal_ = false;
  float cached_normal_ = 0.0f;
};

}  // namespace qforge
