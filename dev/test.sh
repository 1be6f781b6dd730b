#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0            # CPU wheel; an unpinned torch pulls CUDA
.venv/bin/pip install -q -e '.[test]'
# The report tests render in headless Chromium; install it where we can (Debian, root).
# The policy frames test renders MuJoCo offscreen through OSMesa (Debian's libosmesa6).
need=()
command -v chromium >/dev/null || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q libOSMesa || need+=(libosmesa6)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null \
    || echo "${need[*]} could not be installed: the browser and rendering tests will be skipped"
fi
# Two workers, one per core: the tests run one torch thread each (tests/conftest.py).
exec .venv/bin/python -m pytest -n 2 "$@"
