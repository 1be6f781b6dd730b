"""User-written data (a sweep file, a JSON config, CLI fields): bounded in size, turned
into recipes with one-line errors only."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .skill import SkillError


def build(cls, what: str, kwargs: dict[str, Any]):
    """``cls(**kwargs)`` for a dataclass ``cls``; a SkillError naming ``what`` for an unknown
    field (listing the known ones) or a bad value."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise SkillError(f"{what}: unknown field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise SkillError(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None


MAX_NODES = 100_000
MAX_DEPTH = 64


def check_size(data: Any, what: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` if it is at most ``max_depth`` deep and ``max_nodes`` values big, counting a
    value each time it is reached (so YAML anchors that expand exponentially are caught
    before anything expands them); a one-line SkillError otherwise."""
    stack, nodes = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise SkillError(f"{what}: too large (more than {max_nodes:,} values, counting "
                             "every use of a YAML anchor)")
        if depth > max_depth:
            raise SkillError(f"{what}: nested more than {max_depth} levels deep")
        if isinstance(value, dict):
            stack += [(k, depth + 1) for k in value] + [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list | tuple):
            stack += [(v, depth + 1) for v in value]
    return data
