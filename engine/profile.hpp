// An opt-in per-op timer: when enabled, every backend call made through engine/ops.cpp adds
// its wall time under the op's name, so a benchmark can say where a step's time goes.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace sigmar::profile {

struct Entry {
  double ms = 0;
  long calls = 0;
};

bool enabled();
void enable(bool on);
std::map<std::string, Entry>& table();
void reset();

class Scope {
 public:
  explicit Scope(const char* name) : name_(enabled() ? name : nullptr) {
    if (name_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (!name_) return;
    Entry& e = table()[name_];
    e.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
                .count();
    e.calls += 1;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace sigmar::profile
