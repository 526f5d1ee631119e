// A central-difference gradient checker for any differentiable function of Tensors, the
// second of the three oracles (STYLE.md): the analytic gradient autograd computes is compared
// with finite differences of the same forward code.
//
// The function under test f maps a list of CPU float tensors to one output tensor y. The
// checker reduces it to a scalar with a fixed random weighting r (uniform in [-1, 1], same
// seed every run): L = Σ r ⊙ f(inputs). Autograd gives ∂L/∂x by seeding y's backward with r;
// the numeric side perturbs one input element at a time by ±h and takes
// (L(x+h) − L(x−h)) / 2h, with L summed in double from the float outputs.
//
// Error of one element: |analytic − numeric| / max(|analytic|, |numeric|, 1), so large
// gradients are compared relatively and small ones absolutely.
//
// Kinks: ReLU and PReLU at 0 and max-pool where two window entries trade places have no
// derivative, and a difference that straddles one measures a blend of the two sides. Callers
// pick inputs away from kinks (|x| well above h, window values further apart than 2h); as a
// safety net, when `kink_tolerance` > 0 the checker also compares the two one-sided slopes
// (L(x+h) − L(x))/h and (L(x) − L(x−h))/h, which agree to rounding on a piecewise-linear
// function unless a kink lies between, and skips that element. The count of skipped elements
// is reported and must stay under `max_skipped_fraction`, so a check cannot pass by skipping.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace sigmar::testing {

struct GradCheckOptions {
  double step = 1e-2;       // h; an op's own test says why its value suits the op
  double tolerance = 1e-3;  // on the scaled error of one element
  double kink_tolerance = 0;          // 0: smooth op, no kink test
  double max_skipped_fraction = 0.05;
  uint64_t seed = 0x5eed;   // for the weighting r
};

struct GradCheckReport {
  double worst = 0;        // largest scaled error over all checked elements
  std::string where;       // "input 1 [17]: analytic … numeric …" for the worst element
  int64_t checked = 0;     // elements compared
  int64_t skipped = 0;     // elements skipped because the perturbation straddled a kink
  int64_t missing = 0;     // inputs that asked for a gradient and got none
  double tolerance = 0;
  double used() const { return tolerance > 0 ? worst / tolerance : 0; }
};

// f is called with `inputs` (the same tensors each time; the checker perturbs their values in
// place and restores them). Every input with requires_grad set is checked; a gradient it
// already holds is zeroed first. Inputs must be f32 CPU tensors.
using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;
GradCheckReport gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& opt = {});

// gradcheck() plus the doctest checks and a MESSAGE with the share of the tolerance used.
inline GradCheckReport check_gradients(const std::string& what, const TensorFn& f,
                                       const std::vector<Tensor>& inputs,
                                       const GradCheckOptions& opt = {}) {
  GradCheckReport r = gradcheck(f, inputs, opt);
  MESSAGE(what << ": worst scaled error " << r.worst << " = " << 100 * r.used()
               << "% of tolerance " << r.tolerance << " over " << r.checked << " elements ("
               << r.skipped << " skipped at kinks); worst at " << r.where);
  CHECK_MESSAGE(r.checked > 0, what << ": nothing was checked");
  CHECK_MESSAGE(r.missing == 0, what << ": an input that requires a gradient got none");
  CHECK_MESSAGE(r.worst <= r.tolerance, what << ": gradient mismatch at " << r.where);
  CHECK_MESSAGE(r.skipped <= opt.max_skipped_fraction * (r.checked + r.skipped),
                what << ": " << r.skipped << " elements skipped at kinks; move the inputs");
  return r;
}

}  // namespace sigmar::testing
