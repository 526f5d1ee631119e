// Helpers every kernel shares: the label check that runs before anything indexes by a label,
// and the logistic function in the two-branch form that cannot overflow.
//
// check_labels scans once and reports the *first* offending label, so the message points at a
// concrete sample; stable_sigmoid only ever exponentiates a non-positive number.
#include "kernels/kernels.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace sigmar::kernels {

void check_labels(const int32_t* labels, int64_t n, int64_t num_classes, const char* what) {
  const std::string name = what ? what : "labels";
  if (num_classes <= 0) {
    throw std::invalid_argument(name + ": number of classes must be positive, got " +
                                std::to_string(num_classes));
  }
  if (n > 0 && labels == nullptr) {
    throw std::invalid_argument(name + ": label buffer is null for " + std::to_string(n) +
                                " samples");
  }
  // Sequential scan: the first bad position is the one reported, independent of threads.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[i];
    if (y < 0 || y >= num_classes) {
      throw std::invalid_argument(name + ": label " + std::to_string(y) + " at position " +
                                  std::to_string(i) + " is outside [0, " +
                                  std::to_string(num_classes) + ")");
    }
  }
}

float stable_sigmoid(float x) {
  // Why two branches: exp of a large positive number overflows, so each branch only takes
  // exp(-|x|) ∈ (0, 1]. At x = ±inf that is exp(-inf) = 0, giving exactly 1 or 0.
  if (x >= 0.0f) {
    const float e = std::exp(-x);
    return 1.0f / (1.0f + e);
  }
  const float e = std::exp(x);
  return e / (1.0f + e);
}

}  // namespace sigmar::kernels
