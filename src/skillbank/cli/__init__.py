"""The command line: parse, call the library, print a table or JSON. Nothing else.

Every module of this package registers its commands on :data:`app` when imported; each
holds one lifecycle stage (library, acquire, compose, localize, ...).
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import app, main

# lifecycle order for `--help`; a module not listed here registers after these
_ORDER = ["library", "acquire", "continual", "curriculum", "compose", "skillmix", "localize",
          "transfer", "sweep", "repro"]
for _name in sorted((m.name for m in pkgutil.iter_modules(__path__) if m.name != "core"),
                    key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["app", "main"]
