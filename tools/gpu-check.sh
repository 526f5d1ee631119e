#!/usr/bin/env bash
# The GPU check: one script for a machine with an NVIDIA GPU (written for the H200 lent to
# some tasks: x86-64, 16 cores, no network). It builds sigmar with CUDA for sm_90, runs the
# GPU test cases, the kernel lab (when it exists) and one short training epoch on
# Fashion-MNIST, and writes logs and summary.txt into OUTDIR. The whole run is bounded to
# 8 minutes: every step has its own `timeout` and gets at most what is left.
#
#   tools/gpu-check.sh [OUTDIR]          OUTDIR defaults to $OUT, else ./gpu-check-out
#   tools/gpu-check.sh --prepare [DIR]   on a build machine: fill DIR (default build-carry)
#
# What the GPU machine needs. Building there takes meson, ninja, g++ (C++20), nvcc 12+ with
# cuDNN 9 and cuBLAS, and the development files of oneDNN, fmt, CLI11, nlohmann-json, zlib
# and doctest (Debian: tools/setup.sh). A bare CUDA image has nvcc, meson and ninja but not
# oneDNN and the rest, and cannot download them; then build here with --prepare and carry
# the folder it fills (it matches .gitignore's /build*/, so carry it by name). It holds:
#   bin/  sigmar-tests, sigmar-train, sigmar-kernels (if built), compiled for sm_90 and for
#         any x86-64 CPU (-Dnative=false)
#   lib/  the shared libraries those need that a CUDA image lacks (oneDNN, fmt, OpenCL ICD
#         loader, OpenMP runtime)
#   data/fashion-mnist/  the test split and the first 10,000 training images (to fit the
#         64 MiB a device run may carry)
# The CUDA libraries (cudart, cuBLAS, cuDNN) are taken from the GPU machine: /usr/local/cuda
# or the nvidia-* Python wheels, found by searching for them.
#
# Environment: SIGMAR_GPU_BUILD (build folder, default build-gpu), SIGMAR_GPU_CARRY (the
# carried folder, default build-carry), SIGMAR_DATA_DIR (Fashion-MNIST folder),
# SIGMAR_TRAIN_ARGS (extra sigmar-train arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

build=${SIGMAR_GPU_BUILD:-build-gpu}
carry=${SIGMAR_GPU_CARRY:-build-carry}

# ---- --prepare: build here, collect what a bare GPU machine lacks --------------------------
if [ "${1:-}" = "--prepare" ]; then
  dest=${2:-$carry}
  set -e
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dcuda=enabled -Dgpu_archs=90 -Dnative=false -Dbuildtype=release
  fi
  ninja -C "$build" -j"${SIGMAR_JOBS:-2}"
  rm -rf "$dest"
  mkdir -p "$dest/bin" "$dest/lib" "$dest/data/fashion-mnist"
  for b in tests/sigmar-tests tools/sigmar-train tools/sigmar-kernels; do
    if [ -x "$build/$b" ]; then cp "$build/$b" "$dest/bin/"; fi
  done
  # Libraries outside the C runtime and CUDA: what a CUDA image is unlikely to have.
  ldd "$build/tests/sigmar-tests" "$build/tools/sigmar-train" |
    awk '/=> \// {print $1, $3}' | sort -u |
    grep -E 'libdnnl|libfmt|libOpenCL|libgomp|libz\.' | while read -r name path; do
      cp -L "$path" "$dest/lib/$name"
    done
  src=${SIGMAR_DATA_DIR:-/usr/share/datasets/fashion-mnist}
  if [ -f "$src/t10k-images-idx3-ubyte.gz" ]; then
    cp "$src"/t10k-*-idx?-ubyte.gz "$dest/data/fashion-mnist/"
    # The first 10,000 training images and labels, with the IDX counts rewritten to match.
    python3 - "$src" "$dest/data/fashion-mnist" <<'EOF'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
n = 10000
for name, item in (("train-images-idx3-ubyte.gz", 28 * 28), ("train-labels-idx1-ubyte.gz", 1)):
    raw = gzip.open(f"{src}/{name}").read()
    dims = raw[3]
    header = bytearray(raw[:4 + 4 * dims])
    header[4:8] = struct.pack(">I", n)
    body = raw[4 + 4 * dims: 4 + 4 * dims + n * item]
    with gzip.open(f"{dst}/{name}", "wb") as f:
        f.write(bytes(header) + body)
EOF
  else
    echo "gpu-check --prepare: no Fashion-MNIST under $src; the training step will be skipped"
  fi
  du -sh "$dest"
  echo "gpu-check --prepare: carry '$dest' to the GPU machine and run tools/gpu-check.sh there"
  exit 0
fi

# ---- the check ------------------------------------------------------------------------------
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary="$out/summary.txt"
: >"$summary"
start=$(date +%s)
deadline=$((start + 480))  # 8 minutes for everything

note() { echo "$*" | tee -a "$summary"; }
left() { echo $((deadline - $(date +%s))); }

# run_step NAME BUDGET LOG CMD...: runs CMD under `timeout` (its budget, or what is left,
# whichever is less), appends its output to LOG and one line of result to the summary.
run_step() {
  local name=$1 budget=$2 log=$3
  shift 3
  local remaining
  remaining=$(( $(left) - 5 ))
  if [ "$remaining" -lt 10 ]; then
    note "SKIP  $name: the 8-minute budget is spent"
    return 124
  fi
  [ "$budget" -gt "$remaining" ] && budget=$remaining
  local t0
  t0=$(date +%s)
  echo "==== $name (limit ${budget}s): $*" >>"$log"
  timeout --kill-after=5 "$budget" "$@" >>"$log" 2>&1
  local rc=$?
  local took
  took=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    note "OK    $name (${took}s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    note "TIME  $name: stopped after ${budget}s (see $(basename "$log"))"
  else
    note "FAIL  $name: exit $rc after ${took}s (see $(basename "$log"))"
  fi
  return $rc
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
note "sigmar GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $commit"

# 1. What is on this machine.
env_log="$out/env.txt"
{
  echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  for tool in nvcc meson ninja g++ python3; do
    printf '== %s: ' "$tool"; command -v "$tool" || echo "not found"
  done
  nvcc --version 2>&1 | tail -n 2
  echo "== cores: $(nproc)"
} >"$env_log" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
note "GPU: ${gpu_name:-none answered (nvidia-smi)}"

# 2. Binaries: build here when the tools and libraries are present, else use the carried ones.
build_log="$out/build.log"
bin=""
if command -v meson >/dev/null && command -v ninja >/dev/null && command -v nvcc >/dev/null; then
  if [ ! -f "$build/build.ninja" ]; then
    run_step "configure ($build, sm_90)" 120 "$build_log" \
      meson setup "$build" -Dcuda=enabled -Dgpu_archs=90 -Dbuildtype=release
  fi
  if [ -f "$build/build.ninja" ] &&
    run_step "build" 300 "$build_log" ninja -C "$build" -j"$(nproc)"; then
    bin="$build"
  fi
else
  note "SKIP  build: needs meson, ninja and nvcc (found: $(for t in meson ninja nvcc; do
    command -v $t >/dev/null && printf '%s ' $t; done))"
fi
if [ -z "$bin" ] && [ -x "$carry/bin/sigmar-tests" ]; then
  note "using the carried binaries in $carry (built elsewhere by --prepare)"
  bin="$carry"
fi
if [ -z "$bin" ]; then
  note "FAIL  no sigmar binaries: building failed (oneDNN, fmt, CLI11, nlohmann-json, doctest"
  note "      are needed; see build.log) and no carried folder $carry/bin exists."
  note "      Run tools/gpu-check.sh --prepare on a build machine and carry $carry."
  exit 1
fi

# Where each program is, in a build folder or in a carried bin/.
prog() {
  local name=$1
  for p in "$bin/bin/$name" "$bin/tests/$name" "$bin/tools/$name"; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

# Shared libraries: the carried lib/ first, then wherever this machine keeps the CUDA ones.
libpath="$repo/$carry/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && libpath="$libpath:$d"
done
for lib in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13; do
  hit=$(find /usr/local /opt /usr/lib -name "$lib" 2>/dev/null | head -1)
  [ -n "$hit" ] && libpath="$libpath:$(dirname "$hit")"
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tests=$(prog sigmar-tests)
missing=$(ldd "$tests" 2>/dev/null | grep "not found" | awk '{print $1}' | tr '\n' ' ')
[ -n "$missing" ] && note "WARN  libraries not found for sigmar-tests: $missing"

# 3. The GPU test cases (each skips, and says why, where no GPU answers).
test_log="$out/test-cuda.log"
run_step "GPU tests (sigmar-tests -tc='cuda:*')" 180 "$test_log" "$tests" -tc='cuda:*'
# (doctest counts the test cases that -tc filtered out as skipped too.)
grep -E "skipping every|test cases:|assertions:" "$test_log" | sed 's/^/      /' >>"$summary"

# 4. The kernel lab, if this checkout has it: verify, then time.
kernels_log="$out/kernels.log"
if k=$(prog sigmar-kernels); then
  run_step "sigmar-kernels check" 60 "$kernels_log" "$k" check
  run_step "sigmar-kernels bench" 90 "$kernels_log" \
    "$k" bench --device cuda --json "$out/bench.json"
else
  note "SKIP  kernel lab: no sigmar-kernels in this checkout"
fi

# 5. One short training epoch on the GPU.
data=${SIGMAR_DATA_DIR:-}
for d in "$carry/data/fashion-mnist" /usr/share/datasets/fashion-mnist data/fashion-mnist; do
  [ -z "$data" ] && [ -f "$d/t10k-images-idx3-ubyte.gz" ] && data=$d
done
train_log="$out/train.log"
if t=$(prog sigmar-train) && [ -n "$data" ]; then
  rundir=$(mktemp -d)
  # shellcheck disable=SC2086  # SIGMAR_TRAIN_ARGS is a list of words on purpose
  run_step "train 1 epoch, LeNet++ + s2r, Fashion-MNIST in $data" 150 "$train_log" \
    "$t" --device cuda --epochs 1 --dataset fashion-mnist --data-dir "$data" \
    --out "$rundir" --overwrite --no-progress ${SIGMAR_TRAIN_ARGS:-}
  grep -v '^====' "$train_log" | grep -iE "epoch|acc|loss|error" | tail -n 3 |
    sed 's/^/      /' >>"$summary"
  # Keep the run's per-epoch metrics beside our log, if it wrote them.
  [ -f "$rundir/metrics.csv" ] && cp "$rundir/metrics.csv" "$out/train-metrics.csv"
else
  note "SKIP  training: $( [ -z "$data" ] && echo "no Fashion-MNIST found (SIGMAR_DATA_DIR)" ||
    echo "no sigmar-train")"
fi

note "done in $(( $(date +%s) - start ))s; logs in $out"
