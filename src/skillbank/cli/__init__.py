"""The command line: parse, call the library, print a table or JSON. Nothing else.

Every module of this package registers its commands on :data:`app` when imported; each
holds one lifecycle stage (library, acquire, compose, localize, ...).
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import app, main

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "core":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["app", "main"]
