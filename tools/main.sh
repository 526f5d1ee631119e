#!/usr/bin/env bash
# The main job in one command: install what is needed, build, and train LeNet++ on the real
# Fashion-MNIST on the CPU with the defaults (extra arguments go to sigmar-train).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build=${SIGMAR_BUILD:-build}
ninja -C "$build" tools/sigmar-train
exec "$build/tools/sigmar-train" --out runs/main --overwrite "$@"
