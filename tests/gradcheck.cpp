// The central-difference gradient checker (see gradcheck.hpp for the method and its limits).
#include "tests/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "engine/rng.hpp"

namespace sigmar::testing {

namespace {

// L = Σ r_k · y_k in double: the float outputs are exact inputs to a sum whose own rounding
// (about 1e-16 relative) is far below the float noise the difference has to beat.
double weighted_sum(const Tensor& y, const std::vector<float>& r) {
  const std::vector<float> v = y.to_vector();
  if (v.size() != r.size()) throw std::logic_error("gradcheck: output changed shape");
  double s = 0;
  for (size_t k = 0; k < v.size(); ++k) s += double(r[k]) * double(v[k]);
  return s;
}

void expect_checkable(const Tensor& t, size_t i) {
  if (!t.defined() || t.device() != Device::cpu || t.dtype() != DType::f32) {
    throw std::invalid_argument("gradcheck: input " + std::to_string(i) +
                                " must be a defined f32 CPU tensor");
  }
}

}  // namespace

GradCheckReport gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& opt) {
  GradCheckReport rep;
  rep.tolerance = opt.tolerance;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad()) continue;
    expect_checkable(inputs[i], i);
    Tensor(inputs[i]).zero_grad();  // backward adds (SPEC 1): start from zero
  }

  // Analytic side: one backward pass seeded with r gives rᵀ·J for every input at once.
  const Tensor y = f(inputs);
  Rng rng(opt.seed);
  std::vector<float> r(static_cast<size_t>(y.numel()));
  for (float& v : r) v = rng.uniform(-1.0f, 1.0f);
  y.backward(Tensor::from(r, y.shape()));

  NoGradGuard no_grad;
  const double L0 = weighted_sum(f(inputs), r);
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    std::vector<float> analytic(static_cast<size_t>(x.numel()), 0.0f);
    if (x.grad().defined()) {
      analytic = x.grad().to_vector();
    } else {
      ++rep.missing;
    }
    float* p = x.data();
    for (int64_t j = 0; j < x.numel(); ++j) {
      // Perturb by ±h as float32 can hold it: the step actually taken is xp − xm, which
      // differs from 2h by the rounding of x ± h, and dividing by it removes that error.
      const float x0 = p[j];
      const float xp = static_cast<float>(x0 + opt.step);
      const float xm = static_cast<float>(x0 - opt.step);
      p[j] = xp;
      const double Lp = weighted_sum(f(inputs), r);
      p[j] = xm;
      const double Lm = weighted_sum(f(inputs), r);
      p[j] = x0;
      if (opt.kink_tolerance > 0) {
        const double up = (Lp - L0) / (double(xp) - x0);
        const double down = (L0 - Lm) / (double(x0) - xm);
        if (std::abs(up - down) > opt.kink_tolerance * std::max({std::abs(up),
                                                                std::abs(down), 1.0})) {
          ++rep.skipped;
          continue;
        }
      }
      const double numeric = (Lp - Lm) / (double(xp) - double(xm));
      const double a = analytic[static_cast<size_t>(j)];
      const double err =
          std::abs(a - numeric) / std::max({std::abs(a), std::abs(numeric), 1.0});
      ++rep.checked;
      if (err > rep.worst || rep.where.empty()) {
        rep.worst = std::max(rep.worst, err);
        std::ostringstream os;
        os << "input " << i << " [" << j << "]: analytic " << a << ", numeric " << numeric;
        rep.where = os.str();
      }
    }
  }
  return rep;
}

}  // namespace sigmar::testing
