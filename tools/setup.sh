#!/usr/bin/env bash
# Installs every Debian package sigmar needs to build, test and train, then configures the
# build folder. Safe to run again. The CUDA toolkit (nvcc, cuDNN, cuBLAS) is not a Debian
# package here: the build finds it under /usr/local/cuda when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  meson ninja-build g++ pkg-config   # the build
  doctest-dev                        # tests
  libdnnl-dev                        # oneDNN: CPU convolutions and GEMMs
  zlib1g-dev                         # gzip-compressed IDX files
  nlohmann-json3-dev libcli11-dev libfmt-dev
  dataset-fashion-mnist              # the real data, under /usr/share/datasets/fashion-mnist
  python3-torch python3-numpy python3-matplotlib  # references, benchmarks and plots only
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=${SIGMAR_BUILD:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" ${SIGMAR_MESON_ARGS:-}
fi
echo "setup: done; build folder is $build"
