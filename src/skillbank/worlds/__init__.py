"""Worlds: families of tasks with exact graders, generated from seeds.

``get_world(name, **kwargs)`` builds a world by name:

- ``"strings"`` (the default) string transformations and their '+' chains
- ``"lego"``    LEGO variable resolution (Skill-it)
- ``"arith"``   exact integer add/sub/mul with fixed-width operands
- ``"files"``   a user's own JSONL/CSV examples (``get_world("files", path=...)``)
- ``"debian"``  real text shipped with skillbank: Debian package synopses by section
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .arith import ArithWorld
from .base import Example, World, split_of
from .files import DebianWorld, FilesWorld
from .lego import LegoWorld
from .strings import PRIMITIVES, StringsWorld

WORLDS: dict[str, type[World]] = {
    "strings": StringsWorld,
    "lego": LegoWorld,
    "arith": ArithWorld,
    "files": FilesWorld,
    "debian": DebianWorld,
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


def pinned_args(name: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """``args`` with what identifies the world's data added (``World.identity``: a data
    file's sha256), so a recipe holding them names the data by content, not by path. Only
    worlds read from files are built for this; generated worlds need nothing."""
    args = dict(args or {})
    if not issubclass(WORLDS.get(name, World), FilesWorld):
        return args
    world = get_world(name, **args)
    if "path" in args:
        args["path"] = str(Path(args["path"]).resolve())
    return {**args, **world.identity()}


__all__ = [
    "WORLDS",
    "ArithWorld",
    "Example",
    "DebianWorld",
    "FilesWorld",
    "LegoWorld",
    "PRIMITIVES",
    "StringsWorld",
    "World",
    "get_world",
    "pinned_args",
    "split_of",
]
