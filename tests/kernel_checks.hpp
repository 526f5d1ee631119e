// Shared helpers for the kernel tests: central differences over float inputs, a scaled error
// measure, and exact-bits comparison. Used by tests/test_kernels_*.cpp only.
//
// Central differences: the kernels take float inputs and return a float loss, so the probe
// perturbs one float by ±h, reads back the step actually taken (float(x ± h) - x), and divides
// the loss difference by it in double. Error sources, and how the tests size h and tol:
//   truncation  ≈ h²·|f'''|/6   (zero for quadratic losses such as center loss)
//   rounding    ≈ 2^-24·|L| / h (the loss comes back rounded to float)
// With h = 1e-2 and |L|, |f'''| of order 1 both are ≤ ~2e-5, so tol = 2e-4 on the scale
// max(|a|, |b|, 1) leaves a 10x margin; each check reports the fraction of tol it used.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace kernel_checks {

// ∂f/∂v[j] for every j by central differences; f reads v (which is perturbed in place).
inline std::vector<double> central_diff(std::vector<float>& v,
                                        const std::function<double()>& f, float h) {
  std::vector<double> out(v.size());
  for (size_t j = 0; j < v.size(); ++j) {
    const float keep = v[j];
    v[j] = keep + h;
    const double step_up = double(v[j]) - double(keep);
    const double up = f();
    v[j] = keep - h;
    const double step_down = double(keep) - double(v[j]);
    const double down = f();
    v[j] = keep;
    out[j] = (up - down) / (step_up + step_down);
  }
  return out;
}

// Largest |a - b| / max(|a|, |b|, 1) over the two vectors.
inline double scaled_error(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t j = 0; j < a.size(); ++j) {
    const double scale = std::max({std::fabs(double(a[j])), std::fabs(b[j]), 1.0});
    worst = std::max(worst, std::fabs(double(a[j]) - b[j]) / scale);
  }
  return worst;
}

// CHECKs an analytic gradient against central differences and says how much of tol it used.
inline void check_gradient(const char* what, const std::vector<float>& analytic,
                           const std::vector<double>& numeric, double tol) {
  const double err = scaled_error(analytic, numeric);
  MESSAGE(std::string(what) << ": finite-difference error " << err << " (" << 100.0 * err / tol
                << "% of tolerance " << tol << ")");
  CHECK(err <= tol);
}

inline bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float f) { return std::isfinite(f); });
}

inline bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

}  // namespace kernel_checks
