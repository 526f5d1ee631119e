// The one random generator of a run: SplitMix64, whose whole state is one 64-bit word, so a
// checkpoint stores it exactly and a resumed run draws the same numbers (SPEC 1, 7).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace sigmar {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}

  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 24 random bits (exact in float32).
  float uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) without modulo bias worth caring about for n < 2^32.
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((next_u64() >> 32) * n >> 32); }

  // Fisher-Yates permutation of 0..n-1.
  std::vector<int32_t> permutation(int64_t n) {
    std::vector<int32_t> p(n);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(i);
    for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[below(static_cast<uint64_t>(i + 1))]);
    return p;
  }

  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

}  // namespace sigmar
