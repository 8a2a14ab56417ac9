#!/usr/bin/env bash
# Sets up, builds with warnings as errors, and runs every test with ctest;
# then builds again with AddressSanitizer and UBSan and runs every test on
# that build too (CAMGATE_TEST_ASAN=0 skips the second pass).
# Usage: scripts/test.sh [extra ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build -DCAMGATE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure --timeout 900 -j"$jobs" "$@")

if [ "${CAMGATE_TEST_ASAN:-1}" != 0 ]; then
  echo "== again with AddressSanitizer and UndefinedBehaviorSanitizer"
  cmake -S . -B build-asan -DCAMGATE_WERROR=ON -DCAMGATE_SANITIZE=ON \
    >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    ctest --output-on-failure --timeout 900 -j"$jobs" "$@")
fi
