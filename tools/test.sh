#!/usr/bin/env bash
# Installs what is needed, builds, runs every test and ends with one line "N passed, N failed",
# after a line "N skipped" (GPU tests are skipped, and counted, without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
build=${SIGMAR_BUILD:-build}
if ! ninja -C "$build"; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
log=$(mktemp)
"$build/tests/sigmar-tests" --no-intro=false 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# doctest's summary: "[doctest] test cases: 120 | 118 passed | 0 failed | 2 skipped"
line=$(grep "test cases:" "$log" | tail -n 1)
passed=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) passed.*/\1/p')
failed=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) failed.*/\1/p')
skipped=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) skipped.*/\1/p')
rm -f "$log"
if [ -z "$passed" ]; then
  echo "the test binary printed no summary (exit $status)"
  echo "0 passed, 1 failed"
  exit 1
fi
[ "$status" -eq 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "${skipped:-0} skipped (tests that need a GPU, on a machine without one)"
echo "${passed} passed, ${failed:-0} failed"
[ "$status" -eq 0 ]
