// SPEC 3 metrics (see metrics.hpp). Sums run in double; classes absent from the split are
// left out of every mean instead of producing 0/0.
#include "engine/metrics.hpp"

#include <stdexcept>

namespace sigmar {

FeatureMetrics compute_metrics(const std::vector<float>& features, int64_t D,
                               const std::vector<float>& logits, int64_t C,
                               const std::vector<int32_t>& labels) {
  const int64_t N = static_cast<int64_t>(labels.size());
  if (static_cast<int64_t>(features.size()) != N * D ||
      static_cast<int64_t>(logits.size()) != N * C) {
    throw std::invalid_argument("compute_metrics: features, logits and labels disagree in size");
  }
  FeatureMetrics m;
  m.count.assign(C, 0);
  m.variance.assign(C, 0.0);
  std::vector<double> mean(C * D, 0.0);
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int32_t y = labels[i];
    if (y < 0 || y >= C) throw std::out_of_range("compute_metrics: label out of range");
    int64_t best = 0;
    for (int64_t k = 1; k < C; ++k) {
      if (logits[i * C + k] > logits[i * C + best]) best = k;
    }
    correct += best == y;
    ++m.count[y];
    for (int64_t d = 0; d < D; ++d) mean[y * D + d] += features[i * D + d];
  }
  m.accuracy = N ? static_cast<double>(correct) / N : 0.0;
  for (int64_t j = 0; j < C; ++j)
    for (int64_t d = 0; d < D; ++d) mean[j * D + d] /= std::max<int64_t>(m.count[j], 1);
  // σ²_j around the class mean.
  for (int64_t i = 0; i < N; ++i) {
    const int32_t y = labels[i];
    double s = 0;
    for (int64_t d = 0; d < D; ++d) {
      double diff = features[i * D + d] - mean[y * D + d];
      s += diff * diff;
    }
    m.variance[y] += s;
  }
  int64_t present = 0;
  for (int64_t j = 0; j < C; ++j) {
    if (m.count[j] == 0) continue;
    m.variance[j] /= m.count[j];
    m.intra += m.variance[j];
    ++present;
  }
  if (present) m.intra /= present;
  int64_t pairs = 0;
  for (int64_t j = 0; j < C; ++j)
    for (int64_t k = j + 1; k < C; ++k) {
      if (!m.count[j] || !m.count[k]) continue;
      double s = 0;
      for (int64_t d = 0; d < D; ++d) {
        double diff = mean[j * D + d] - mean[k * D + d];
        s += diff * diff;
      }
      m.inter += s;
      ++pairs;
    }
  if (pairs) m.inter /= pairs;
  m.intra_ratio = m.inter > 0 ? m.intra / m.inter : 0.0;
  return m;
}

}  // namespace sigmar
