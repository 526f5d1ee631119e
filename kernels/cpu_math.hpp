// Inline building blocks that several CPU twins share, kept in a header so that each one
// inlines into its caller's loop and vectorises there:
// - exp_nonpositive: exp(t) for t ≤ 0, branch-free (softmax-ce, SNNL, σ²R's sigmoid);
// - sq_distance: ‖x − c‖² of one row in float lanes, optionally writing (x − c)·scale
//   (center loss writes its gradient in the same pass; σ²R only needs the distance).
// CPU only: the CUDA kernels have their own device helpers in kernels/common.cuh.
#pragma once

#include <bit>
#include <cstdint>

namespace sigmar::kernels::cpu {

// exp(t) for t ≤ 0 (or NaN), to about 1e-13 relative, in straight-line code that vectorises.
// t = n·ln2 + r with |r| ≤ ln2/2, exp(r) by its Taylor polynomial of degree 11 (remainder
// below 1e-14), and 2^n built in the exponent bits. t = 0 gives exactly 1 (n = 0, r = 0), so
// a softmax row's largest term is exactly 1 as with libm; below -700 (and at -inf) the result
// is exactly 0, where libm would give at most 1e-304, which is 0 in any float result.
inline double exp_nonpositive(double t) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 0.6931471805598903;     // ln 2 to 43 bits: n·kLn2Hi is exact
  constexpr double kLn2Lo = 5.497923018708371e-14;  // ln 2 - kLn2Hi
  constexpr double kRound = 6755399441055744.0;     // 1.5·2^52: adding it rounds to an integer
  const double tc = t < -700.0 ? -700.0 : t;        // keeps 2^n a normal number (NaN passes)

  // n = round(t·log2 e): the shifter leaves n in the low mantissa bits of `shifted`.
  const double shifted = tc * kLog2e + kRound;
  const double n = shifted - kRound;
  const double r = (tc - n * kLn2Hi) - n * kLn2Lo;

  // exp(r) = Σ r^j / j!, Horner from the top.
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;

  // 2^n: n + 1023 into the exponent field (n ≥ -1010 here, so never subnormal).
  const uint64_t bits = (std::bit_cast<uint64_t>(shifted) + 1023) << 52;
  const double e = p * std::bit_cast<double>(bits);
  return t < -700.0 ? 0.0 : e;
}

// Partial sums per row in sq_distance: float lanes, each holding about D/kLanes squares.
inline constexpr int64_t kLanes = 16;

// Returns ‖x − c‖² over D values and, when g is given, writes g[j] = (x[j] − c[j])·scale.
// The difference is formed once, in float, and squared into kLanes independent float sums, so
// no addition waits on the one before and each lane holds few terms; the lanes are then added
// pairwise in double, in a fixed order. A sum of squares cannot cancel, so a row of D up to a
// few thousand keeps its sum to a few float ulps. The last D mod kLanes columns (all of them
// in a narrow row) go straight into the double sum.
inline double sq_distance(const float* x, const float* c, int64_t D, float scale, float* g) {
  double acc = 0.0;
  int64_t j0 = 0;
  if (D >= kLanes) {
    float lane[kLanes] = {};
    for (; j0 + kLanes <= D; j0 += kLanes) {
#pragma omp simd
      for (int64_t j = 0; j < kLanes; ++j) {
        const float diff = x[j0 + j] - c[j0 + j];
        lane[j] += diff * diff;
        if (g) g[j0 + j] = diff * scale;
      }
    }
    double l[kLanes];
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) l[j] = lane[j];
    for (int64_t h = kLanes / 2; h >= 1; h /= 2) {
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) l[j] += l[j + h];
    }
    acc = l[0];
  }
  for (; j0 < D; ++j0) {
    const float diff = x[j0] - c[j0];
    acc += double(diff) * double(diff);
    if (g) g[j0] = diff * scale;
  }
  return acc;
}

}  // namespace sigmar::kernels::cpu
