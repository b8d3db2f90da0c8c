#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png: runs the browser tests with headless Chromium and saves the
# pages they visit. Needs chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export ATRIUM_TEST_CHROMIUM="${ATRIUM_TEST_CHROMIUM:-$(command -v chromium)}"
export ATRIUM_SCREENSHOTS_DIR="$PWD/docs/screenshots"
cargo test --test it browser::
ls -1 "$ATRIUM_SCREENSHOTS_DIR"
