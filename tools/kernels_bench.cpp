// sigmar-kernels `check` and `bench` (declared in kernels_registry.hpp), and the machine's
// limits they are measured against.
//
// check: each kernel on random shapes, the CUDA backend against the CPU twin, output by output,
//   reporting the largest error and how much of the kernel's tolerance it used.
// bench: verify first, then time. For each kernel and size, our kernel's first result is
//   compared with every verifying reference (the unfused chain, or the library called
//   directly); then ours and the references run in alternation, after a warm-up, until the
//   time budget is spent, and the medians are reported with GB/s, GFLOP/s and the fraction of
//   the roofline this run measured (copy bandwidth, FMA peak). A table on stdout, JSON beside.
#include <fmt/format.h>
#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>

#include "engine/rng.hpp"
#include "tools/kernels_registry.hpp"

#ifdef SIGMAR_CUDA
#include "engine/cuda/cuda_backend.hpp"
#include "tools/kernels_gpu.hpp"
#endif

namespace sigmar::lab {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ---- timing one call on a device ---------------------------------------------------------------
// CPU: wall time around the call (our kernels and the references return when done).
// GPU: events on the run's stream around the call, then a wait: the GPU time of everything
// the call queued, including gaps while the host was still launching.
class Timer {
 public:
  explicit Timer(Device d) : device_(d) {
#ifdef SIGMAR_CUDA
    if (d == Device::cuda) {
      CUDA_CHECK(cudaEventCreate(&start_));
      CUDA_CHECK(cudaEventCreate(&stop_));
    }
#endif
  }
  ~Timer() {
#ifdef SIGMAR_CUDA
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
#endif
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Microseconds one call of fn takes.
  double us(const std::function<void()>& fn) {
#ifdef SIGMAR_CUDA
    if (device_ == Device::cuda) {
      CUDA_CHECK(cudaEventRecord(start_, cuda::stream()));
      fn();
      CUDA_CHECK(cudaEventRecord(stop_, cuda::stream()));
      CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      return 1e3 * ms;
    }
#endif
    const auto t0 = Clock::now();
    fn();
    return 1e6 * seconds_since(t0);
  }

 private:
  Device device_;
#ifdef SIGMAR_CUDA
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
#endif
};

// ---- machine limits ----------------------------------------------------------------------------

struct Limits {
  double copy_gbps = 0;    // bytes read + bytes written per second, large copies, all threads
  double fma_gflops = 0;   // fused multiply-adds in registers, all threads (2 FLOPs each)
  std::string fma_kind;    // which instructions reached it
  double cache_bytes = 0;  // the last-level cache: work that fits may beat the copy bandwidth
};

double last_level_cache() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return double(std::max({l3, l2, 0L}));
}

// Copy bandwidth: each thread copies its own slice of a buffer of at least 256 MiB and at least
// the last-level cache (memcpy, which streams past the caches at this size); the best of
// repeated passes over about 0.4 s.
double cpu_copy_gbps() {
  const size_t n = std::max(size_t(64) << 20, size_t(last_level_cache() / sizeof(float)));
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = float(i & 1023), b[i] = 0.0f;  // first touch per thread
  double best = 0;
  const auto t_end = Clock::now() + std::chrono::milliseconds(400);
  for (int pass = 0; pass < 3 || Clock::now() < t_end; ++pass) {
    const auto t0 = Clock::now();
#pragma omp parallel
    {
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
      const size_t lo = n * t / nt, hi = n * (t + 1) / nt;
      std::memcpy(b.get() + lo, a.get() + lo, (hi - lo) * sizeof(float));
    }
    best = std::max(best, 2.0 * n * sizeof(float) / seconds_since(t0) / 1e9);
  }
  return best;
}

// FMA peak: per thread, kChains independent accumulator registers updated by FMAs, enough
// chains to cover the FMA latency on every port. AVX-512 where the CPU has it, else AVX2.
constexpr int kChains = 16;
constexpr long kFmaIters = 1 << 22;

__attribute__((target("avx512f"))) double fma_avx512(long iters) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1e-3f * float(c));
  const __m512 m = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, add);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  return double(lanes[0]);
}

__attribute__((target("avx2,fma"))) double fma_avx2(long iters) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1e-3f * float(c));
  const __m256 m = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, add);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  return double(lanes[0]);
}

void cpu_fma(Limits& l) {
  const bool wide = __builtin_cpu_supports("avx512f");
  const int lanes = wide ? 16 : 8;
  l.fma_kind = wide ? "AVX-512 FMA" : "AVX2 FMA";
  double best = 0, sink = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    int threads = 1;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
      threads = omp_get_num_threads();
      sink += wide ? fma_avx512(kFmaIters) : fma_avx2(kFmaIters);
    }
    const double flops = 2.0 * kChains * lanes * double(kFmaIters) * threads;
    best = std::max(best, flops / seconds_since(t0) / 1e9);
  }
  if (sink == 12345.0) l.fma_kind += " ";  // uses the sums, so no chain is optimised away
  l.fma_gflops = best;
}

#ifdef SIGMAR_CUDA
Limits gpu_limits() {
  Limits l;
  l.fma_kind = "fp32 FMA (CUDA cores)";
  int dev = 0, l2 = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  l.cache_bytes = l2;
  Timer timer(Device::cuda);
  const size_t bytes = size_t(1) << 30;
  Tensor a = Tensor::zeros({int64_t(bytes / 4)}, Device::cuda);
  Tensor b = Tensor::zeros({int64_t(bytes / 4)}, Device::cuda);
  for (int i = 0; i < 10; ++i) {
    const double us = timer.us([&] {
      CUDA_CHECK(
          cudaMemcpyAsync(b.raw(), a.raw(), bytes, cudaMemcpyDeviceToDevice, cuda::stream()));
    });
    l.copy_gbps = std::max(l.copy_gbps, 2.0 * bytes / us / 1e3);
  }
  Tensor sink = Tensor::empty({gpu::fma_kernel_sink_floats()}, Device::cuda);
  for (int i = 0; i < 10; ++i) {
    double flops = 0;
    const double us = timer.us([&] { flops = gpu::fma_kernel(sink.data(), cuda::stream()); });
    l.fma_gflops = std::max(l.fma_gflops, flops / us / 1e3);
  }
  return l;
}
#endif

Limits measure_limits(Device d) {
#ifdef SIGMAR_CUDA
  if (d == Device::cuda) return gpu_limits();
#endif
  (void)d;
  Limits l;
  l.copy_gbps = cpu_copy_gbps();
  l.cache_bytes = last_level_cache();
  cpu_fma(l);
  return l;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// How busy the CPUs are with other work: the fraction of all cores' time spent outside idle
// over `seconds` while this process sleeps (/proc/stat; -1 where it cannot be read).
double cpu_busy_fraction(double seconds) {
  const auto sample = [](double& busy, double& total) {
    std::ifstream in("/proc/stat");
    std::string cpu;
    double v[8] = {};
    in >> cpu;
    for (double& x : v) in >> x;
    if (!in || cpu != "cpu") return false;
    total = 0;
    for (double x : v) total += x;
    busy = total - v[3] - v[4];  // idle and iowait
    return true;
  };
  double b0 = 0, t0 = 0, b1 = 0, t1 = 0;
  if (!sample(b0, t0)) return -1;
  usleep(static_cast<useconds_t>(seconds * 1e6));
  if (!sample(b1, t1) || t1 <= t0) return -1;
  return (b1 - b0) / (t1 - t0);
}

// ---- comparing outputs -------------------------------------------------------------------------

struct Agreement {
  double err = 0;     // largest relative error over the compared outputs
  std::string worst;  // the output it came from
  bool ok = true;
};

// Compares every output both sides have; `tol` is the relative tolerance per tensor.
Agreement agree(const TensorMap& ours, const TensorMap& theirs, double tol) {
  Agreement a;
  for (const auto& [name, t] : theirs) {
    auto o = ours.find(name);
    if (o == ours.end() || !o->second.defined() || !t.defined()) continue;
    const double e = relative_error(o->second, t);
    if (e >= a.err) a.err = e, a.worst = name;
  }
  a.ok = a.err <= tol;
  return a;
}

TensorMap clone_all(const TensorMap& in, Device d) {
  TensorMap out;
  for (const auto& [n, t] : in) out[n] = t.defined() ? t.to(Device::cpu).clone().to(d) : t;
  return out;
}

Params settings_params(const KernelSpec& k, const std::string& settings, Dims* dims) {
  Params p = parse_params(k, {});
  *dims = parse_size(k, settings, p);
  return p;
}

std::string params_str(const KernelSpec& k, const Params& p) {
  std::string s;
  for (const auto& spec : k.params) {
    const double v = p.at(spec.name);
    if (v == parse_params(k, {}).at(spec.name)) continue;  // the default: not worth a word
    const std::string text =
        spec.choices.empty() ? fmt::format("{:g}", v) : spec.choices[size_t(v)];
    s += (s.empty() ? "" : ",") + spec.name + "=" + text;
  }
  return s;
}

}  // namespace

// ---- check -------------------------------------------------------------------------------------

int check_command(const CheckOptions& o, std::ostream& out) {
  std::string why;
  if (!cuda_available(&why)) {
    out << "check: no GPU here (" << why << "), so there is no CUDA kernel to compare with "
        << "its CPU twin; nothing to do. Run it on a machine with a GPU.\n";
    return 0;
  }
  std::vector<const KernelSpec*> kernels;
  if (o.kernel.empty())
    for (const auto& k : registry()) kernels.push_back(&k);
  else
    kernels.push_back(&find_kernel(o.kernel));
  out << "check: CUDA backend against the CPU twins, " << o.shapes << " random shapes per kernel\n";
  out << fmt::format("{:<11}{:<56}{:>12}{:>10}{:>9}  {}\n", "kernel", "shape and parameters",
                     "max error", "tolerance", "used", "worst output");
  Rng draw(o.seed);
  int failures = 0;
  for (const KernelSpec* k : kernels) {
    for (int s = 0; s < o.shapes; ++s) {
      const std::string settings = random_settings(*k, draw, size_t(s));
      Dims dims;
      const Params p = settings_params(*k, settings, &dims);
      TensorMap cpu_in = random_inputs(*k, dims, p, o.seed + 1000 * s, Device::cpu);
      TensorMap gpu_in = clone_all(cpu_in, Device::cuda);
      const TensorMap want = k->run(cpu_in, p);
      const TensorMap got = k->run(gpu_in, p);
      const Agreement a = agree(got, want, k->check_rtol);
      failures += a.ok ? 0 : 1;
      const std::string what = size_str(*k, dims) + " " + params_str(*k, p);
      out << fmt::format("{:<11}{:<56}{:>12.3g}{:>10.0e}{:>8.1f}%  {}{}\n", k->name, what, a.err,
                         k->check_rtol, 100.0 * a.err / k->check_rtol, a.worst,
                         a.ok ? "" : "  FAIL");
    }
  }
  out << (failures ? fmt::format("check: {} FAILED\n", failures) : "check: all agree\n");
  return failures ? 1 : 0;
}

// ---- bench -------------------------------------------------------------------------------------

namespace {

struct RefResult {
  std::string name;
  double us = 0;
  bool verify = false;
  Agreement agreement;
};

struct Row {
  const KernelSpec* kernel;
  std::string size, params;
  Cost cost;
  double us = 0;
  std::vector<RefResult> refs;
};

// Roofline fraction: the time the limits allow for this work over the time it took. The bound
// says which limit sets that time; "cache" is a memory-bound row whose bytes fit in the
// last-level cache, which can then run faster than the copy bandwidth (over 100%).
double roofline(const Cost& c, const Limits& l, double us, std::string* bound) {
  const double t_mem = c.bytes / (l.copy_gbps * 1e3), t_fma = c.flops / (l.fma_gflops * 1e3);
  *bound = t_mem < t_fma ? "fma" : c.bytes <= l.cache_bytes ? "cache" : "mem";
  return std::max(t_mem, t_fma) / us;
}

Row bench_one(const KernelSpec& k, const std::string& settings, const BenchOptions& o,
              Timer& timer) {
  Dims dims;
  const Params p = settings_params(k, settings, &dims);
  Row row{&k, size_str(k, dims), params_str(k, p), k.cost(dims, p), 0, {}};
  TensorMap ours_in = random_inputs(k, dims, p, 7, o.device);
  const TensorMap ref_in = clone_all(ours_in, o.device);  // pristine: ours updates state

  // Verify first: our first result against every verifying reference's.
  std::vector<std::unique_ptr<Reference>> refs;
  const TensorMap first = k.run(ours_in, p);
  for (const auto& spec : k.references) {
    if (spec.gpu_only && o.device != Device::cuda) continue;
    refs.push_back(spec.make(ref_in, p));
    RefResult r{refs.back()->name(), 0, spec.verify, {}};
    refs.back()->run();
    if (spec.verify) r.agreement = agree(first, refs.back()->outputs(), k.ref_rtol);
    row.refs.push_back(r);
  }

  // Then time: warm-up, then ours and each reference in turn until the budget is spent.
  auto ours = [&] { k.run(ours_in, p); };
  for (int i = 1; i < o.warmup; ++i) {
    ours();
    for (auto& r : refs) r->run();
  }
  std::vector<double> t_ours;
  std::vector<std::vector<double>> t_refs(refs.size());
  const auto t0 = Clock::now();
  while (t_ours.size() < 5 || seconds_since(t0) < o.seconds) {
    t_ours.push_back(timer.us(ours));
    for (size_t i = 0; i < refs.size(); ++i) t_refs[i].push_back(timer.us([&] { refs[i]->run(); }));
  }
  row.us = median(t_ours);
  for (size_t i = 0; i < refs.size(); ++i) row.refs[i].us = median(t_refs[i]);
  return row;
}

void print_header(std::ostream& out) {
  out << fmt::format("{:<11}{:<48}{:>10}{:>8}{:>9}{:>11}  {:<22}{:>10}{:>9}  {}\n", "kernel",
                     "size", "ours µs", "GB/s", "GFLOP/s", "of limit", "reference", "ref µs",
                     "ref/us", "verified (max rel. error / tolerance)");
}

void print_row(const Row& r, const Limits& l, std::ostream& out) {
  std::string bound;
  const double frac = roofline(r.cost, l, r.us, &bound);
  const std::string size = r.size + (r.params.empty() ? "" : " " + r.params);
  std::string head =
      fmt::format("{:<11}{:<48}{:>10.1f}{:>8.1f}{:>9.1f}{:>7.1f}% {}", r.kernel->name, size, r.us,
                  r.cost.bytes / r.us / 1e3, r.cost.flops / r.us / 1e3, 100 * frac, bound);
  if (r.refs.empty()) out << head << "\n";
  for (size_t i = 0; i < r.refs.size(); ++i) {
    const RefResult& f = r.refs[i];
    const std::string check =
        !f.verify ? "bound, computes nothing to compare"
                  : fmt::format("{} {:.2g} / {:.0e} ({})", f.agreement.ok ? "yes" : "NO, MISMATCH",
                                f.agreement.err, r.kernel->ref_rtol, f.agreement.worst);
    out << (i == 0 ? head : std::string(head.size(), ' '))
        << fmt::format("  {:<22}{:>10.1f}{:>7.2f}×  {}\n", f.name, f.us, f.us / r.us, check);
  }
  out.flush();
}

nlohmann::json row_json(const Row& r, const Limits& l) {
  std::string bound;
  const double frac = roofline(r.cost, l, r.us, &bound);
  nlohmann::json refs = nlohmann::json::array();
  for (const auto& f : r.refs) {
    nlohmann::json j{{"name", f.name},
                     {"us", f.us},
                     {"ratio_ref_over_ours", f.us / r.us},
                     {"verifies", f.verify}};
    if (f.verify) {
      j["max_rel_error"] = f.agreement.err;
      j["tolerance"] = r.kernel->ref_rtol;
      j["agrees"] = f.agreement.ok;
    }
    refs.push_back(j);
  }
  return {{"kernel", r.kernel->name},
          {"size", r.size},
          {"params", r.params},
          {"bytes", r.cost.bytes},
          {"flops", r.cost.flops},
          {"us", r.us},
          {"GBps", r.cost.bytes / r.us / 1e3},
          {"GFLOPps", r.cost.flops / r.us / 1e3},
          {"fraction_of_limit", frac},
          {"bound", bound},
          {"references", refs}};
}

}  // namespace

int bench_command(const BenchOptions& o, std::ostream& out) {
  if (o.threads > 0) set_cpu_threads(o.threads);
  std::vector<const KernelSpec*> kernels;
  if (o.kernel.empty())
    for (const auto& k : registry()) kernels.push_back(&k);
  else
    kernels.push_back(&find_kernel(o.kernel));
  if (o.device == Device::cuda) backend_for(Device::cuda);  // says why when there is no GPU

  // Threads that wait for a core make every parallel call last a scheduler time slice (tens
  // of ms): times from a shared CPU are not the kernel's. Say so before measuring anything.
  const double busy = cpu_busy_fraction(0.3);
  if (busy > 0.25) {
    out << fmt::format(
        "warning: {:.0f}% of the CPU time was taken by other processes just now; CPU times "
        "below will be too long (run on an idle machine)\n",
        100 * busy);
  }
  const Limits limits = measure_limits(o.device);
  const std::string machine =
      o.device == Device::cpu ? fmt::format("{}, {} threads", cpu_model(), omp_get_max_threads())
                              : backend_for(Device::cuda).describe();
  out << fmt::format(
      "machine: {}\n  {}\n  measured limits: copy {:.1f} GB/s, {} {:.1f} GFLOP/s; last-level "
      "cache {:.0f} MiB\n",
      machine, backend_for(o.device).describe(), limits.copy_gbps, limits.fma_kind,
      limits.fma_gflops, limits.cache_bytes / (1 << 20));
  out << fmt::format(
      "  times: median of alternating runs over {:.2g} s per row after {} "
      "warm-up calls; 'of limit' = roofline time / our time\n",
      o.seconds, o.warmup);
  print_header(out);

  Timer timer(o.device);
  nlohmann::json rows = nlohmann::json::array();
  int mismatches = 0;
  for (const KernelSpec* k : kernels) {
    const std::vector<std::string>& sizes = o.sizes.empty() ? k->bench_sizes : o.sizes;
    for (const auto& s : sizes) {
      const Row r = bench_one(*k, s, o, timer);
      for (const auto& f : r.refs) mismatches += f.verify && !f.agreement.ok ? 1 : 0;
      print_row(r, limits, out);
      rows.push_back(row_json(r, limits));
    }
  }
  if (!o.json_path.empty()) {
    nlohmann::json doc{{"tool", "sigmar-kernels bench"},
                       {"device", device_name(o.device)},
                       {"machine", machine},
                       {"backend", backend_for(o.device).describe()},
                       {"cpu_busy_before", busy},
                       {"limits",
                        {{"copy_GBps", limits.copy_gbps},
                         {"fma_GFLOPps", limits.fma_gflops},
                         {"fma_kind", limits.fma_kind},
                         {"cache_bytes", limits.cache_bytes}}},
                       {"seconds_per_row", o.seconds},
                       {"warmup", o.warmup},
                       {"rows", rows}};
    std::ofstream f(o.json_path);
    f << doc.dump(2) << "\n";
    if (!f) throw std::runtime_error("bench: cannot write " + o.json_path);
    out << "wrote " << o.json_path << "\n";
  }
  if (mismatches) out << "bench: " << mismatches << " reference(s) DISAGREE with our kernel\n";
  return mismatches ? 1 : 0;
}

}  // namespace sigmar::lab
