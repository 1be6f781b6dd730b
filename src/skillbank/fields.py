"""Recipes from user-written mappings (a sweep file, CLI fields): one-line errors only."""

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
