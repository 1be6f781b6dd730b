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
import os
from collections.abc import Sequence
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


def world_for(recipes: Sequence[dict], world: str | None = None,
              data: str | os.PathLike[str] | None = None) -> tuple[str, dict[str, Any]]:
    """``(world name, pinned arguments)`` for a command over skills made from ``recipes``.

    - ``data`` given: that file, in world ``files`` (``world`` may only say ``files``);
    - otherwise the world the recipes name (or ``world``, when given) with the arguments
      they were made with — a files world's data file, re-read and checked against the
      sha256 the recipe holds, so a file changed since is an error, not a silent re-use;
    - recipes naming no world (or ``world`` differing from theirs): ``world`` (default
      ``strings``) with no arguments; ``files`` then needs ``data``.
    """
    made = [(r["world"], r.get("world_args") or {}) for r in recipes
            if isinstance(r.get("world"), str)]
    if data is not None:
        if world not in (None, "files"):
            raise ValueError(f"--data is a file for --world files, not for world {world!r}")
        return "files", pinned_args("files", {"path": str(data)})
    if world is None:
        names = sorted({n for n, _ in made})
        if len(names) > 1:
            raise ValueError(f"the skills come from different worlds ({', '.join(names)}): "
                             "pass --world")
        world = names[0] if names else "strings"
    same = [a for n, a in made if n == world]
    if same and all(a == same[0] for a in same):
        get_world(world, **same[0])   # raises if the data changed since the recipe
        return world, dict(same[0])
    if world == "files":
        raise ValueError("--world files needs --data FILE" + (
            " (the skills were made from different data files)" if same else ""))
    return world, pinned_args(world, {})


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
    "world_for",
    "split_of",
]
