"""Worlds: families of tasks with exact graders, generated from seeds.

``get_world(name, **kwargs)`` builds a world by name:

- ``"strings"`` (the default) string transformations and their '+' chains
- ``"lego"``    LEGO variable resolution (Skill-it)
- ``"arith"``   exact integer add/sub/mul with fixed-width operands
- ``"files"``   a user's own JSONL/CSV examples (``get_world("files", path=...)``)
"""

from __future__ import annotations

import inspect
from typing import Any

from .arith import ArithWorld
from .base import Example, World, split_of
from .files import FilesWorld
from .lego import LegoWorld
from .strings import PRIMITIVES, StringsWorld

WORLDS: dict[str, type[World]] = {
    "strings": StringsWorld,
    "lego": LegoWorld,
    "arith": ArithWorld,
    "files": FilesWorld,
}


def get_world(name: str = "strings", **kwargs: Any) -> World:
    """The world called ``name``, built with ``kwargs``; ValueError if unknown."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; known worlds: {', '.join(WORLDS)}")
    cls = WORLDS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for world {name!r}: {e}") from None
    return cls(**kwargs)


__all__ = [
    "WORLDS",
    "ArithWorld",
    "Example",
    "FilesWorld",
    "LegoWorld",
    "PRIMITIVES",
    "StringsWorld",
    "World",
    "get_world",
    "split_of",
]
