"""skillbank: a versioned library of neural-network skills."""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skillbank")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# libgomp spin-waits by default; on a shared 2-core machine that made torch steps up to
# 80x slower (measured while grafting). Passive waiting costs nothing when cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
