// The numbers that judge a loss (SPEC 3), computed on host copies of the test split's
// features [N,D], logits [N,C] and labels [N].
#pragma once

#include <cstdint>
#include <vector>

namespace sigmar {

struct FeatureMetrics {
  double accuracy = 0;            // argmax of logits
  std::vector<int64_t> count;     // per class
  std::vector<double> variance;   // σ²_j = mean ‖x − μ_j‖² over class j (0 when absent)
  double intra = 0;               // mean σ²_j over the classes present
  double inter = 0;               // mean ‖μ_j − μ_k‖² over pairs of present classes
  double intra_ratio = 0;         // intra / inter (0 when inter is 0)
};

FeatureMetrics compute_metrics(const std::vector<float>& features, int64_t dim,
                               const std::vector<float>& logits, int64_t num_classes,
                               const std::vector<int32_t>& labels);

}  // namespace sigmar
