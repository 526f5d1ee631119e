// PReLU, CPU twin: y = x for x > 0, a·x otherwise, with one slope per channel or one shared.
//
// The input is viewed as [N, Ch, S] (S = H·W, or 1 for [N, Ch]). The forward and dx are
// elementwise over contiguous S-runs, so each (n, c) run is one vectorisable loop. The slope
// gradient da_c = Σ_{x ≤ 0} x·dy is first reduced per (n, c) run into a buffer (in double),
// then the runs are added in a fixed (n, c) order, so the value does not depend on threads.
#include "kernels/kernels.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace sigmar::kernels {

namespace {

void check_prelu(int64_t N, int64_t Ch, int64_t S, int64_t num_slopes, const char* what) {
  if (N < 0 || Ch <= 0 || S <= 0)
    throw std::invalid_argument(std::string(what) + ": need N >= 0, Ch > 0 and S > 0");
  if (num_slopes != 1 && num_slopes != Ch)
    throw std::invalid_argument(std::string(what) + ": num_slopes must be 1 or Ch (" +
                                std::to_string(Ch) + "), got " + std::to_string(num_slopes));
}

}  // namespace

void prelu_forward(const float* x, const float* a, int64_t N, int64_t Ch, int64_t S,
                   int64_t num_slopes, float* y) {
  check_prelu(N, Ch, S, num_slopes, "prelu_forward");
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N * Ch; ++r) {
    // Run r is sample r / Ch, channel r % Ch; its slope is shared or per channel.
    const float slope = a[num_slopes == 1 ? 0 : r % Ch];
    const float* xr = x + r * S;
    float* yr = y + r * S;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) yr[s] = xr[s] > 0.0f ? xr[s] : slope * xr[s];
  }
}

void prelu_backward(const float* x, const float* a, const float* dy, int64_t N, int64_t Ch,
                    int64_t S, int64_t num_slopes, float* dx, float* da) {
  check_prelu(N, Ch, S, num_slopes, "prelu_backward");
  std::vector<double> run_da(static_cast<size_t>(N * Ch));

#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N * Ch; ++r) {
    const float slope = a[num_slopes == 1 ? 0 : r % Ch];
    const float* xr = x + r * S;
    const float* gr = dy + r * S;
    // dx: dy on the positive side, a·dy on the rest (x == 0 takes the slope, SPEC 1).
    if (dx) {
      float* dxr = dx + r * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) dxr[s] = xr[s] > 0.0f ? gr[s] : slope * gr[s];
    }
    // ∂y/∂a = x where x ≤ 0 (0 at x == 0 either way), so da collects x·dy there. A run is
    // one feature map (S ≤ a few thousand values): float lanes are exact enough within it
    // and vectorise fully; the runs are then summed in double, in a fixed order, below.
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t s = 0; s < S; ++s) acc += xr[s] > 0.0f ? 0.0f : xr[s] * gr[s];
    run_da[r] = acc;
  }

  if (!da) return;
  // Fixed-order reduction over runs: channel by channel, samples in order.
  for (int64_t c = 0; c < num_slopes; ++c) da[c] = 0.0f;
  if (num_slopes == 1) {
    double total = 0.0;
    for (int64_t r = 0; r < N * Ch; ++r) total += run_da[r];
    da[0] = float(total);
    return;
  }
  for (int64_t c = 0; c < Ch; ++c) {
    double total = 0.0;
    for (int64_t n = 0; n < N; ++n) total += run_da[n * Ch + c];
    da[c] = float(total);
  }
}

}  // namespace sigmar::kernels
