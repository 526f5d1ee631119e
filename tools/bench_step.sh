#!/usr/bin/env bash
# Times a LeNet++ training step (batch 128, 2 threads by default) in sigmar and in PyTorch
# side by side, alternating them twice so that machine noise hits both, and prints the
# medians and the ratio. Usage: tools/bench_step.sh [--batch-size N] [--threads N] ...
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SIGMAR_BUILD:-build}
ninja -C "$build" tools/sigmar-bench-step >/dev/null
results=$(mktemp)
for round in 1 2; do
  "$build/tools/sigmar-bench-step" --seconds 8 "$@" | tee -a "$results"
  /usr/bin/python3 tools/bench_step_torch.py --seconds 8 "$@" | tee -a "$results"
done
/usr/bin/python3 - "$results" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = statistics.median(r["ms_per_step"] for r in rows if r["engine"] == "sigmar")
torch = statistics.median(r["ms_per_step"] for r in rows if r["engine"] != "sigmar")
print(f"sigmar {ours:.1f} ms/step, pytorch {torch:.1f} ms/step: "
      f"sigmar takes {ours / torch:.2f}x PyTorch's time ({torch / ours:.2f}x its speed)")
PY
rm -f "$results"
