#!/usr/bin/env bash
# Superseded by `tokenvault demo` (SPEC §11): a throw-away world with simulated providers,
# its daemon and the terminal UI, removed on exit. Kept so old instructions still work;
# arguments are passed on (e.g. `--headless --seconds 60`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -- demo "$@"
