#!/usr/bin/env bash
# Sets up, builds, and runs camgate in the foreground on a config
# (config/camgate.example.yaml unless one is given).
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-config/camgate.example.yaml}
scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"
exec build/camgate run -c "$config"
