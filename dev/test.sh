#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0            # CPU wheel; an unpinned torch pulls CUDA
.venv/bin/pip install -q -e '.[test]'
# The report tests render in headless Chromium; install it where we can (Debian, root).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
    || echo "chromium could not be installed: browser tests will be skipped"
fi
# Two workers, one per core: the tests run one torch thread each (tests/conftest.py).
exec .venv/bin/python -m pytest -n 2 "$@"
