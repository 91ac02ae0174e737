#!/usr/bin/env bash
# Every test: installs what the build needs, builds, and runs `swift test`
# (unit tests, gradient checks, CLI and bad-input tests, and the multi-rank
# tests under real mpirun with timeouts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
swift build --build-tests
swift test --disable-swift-testing
