"""A skill: a manifest (what it is, where it came from) plus a flat dict of tensors.

Kinds and what their tensors hold (keys are module paths in the base model):

- ``lora``   ``{module}.lora_A.weight`` (r×in) and ``{module}.lora_B.weight`` (out×r);
             ΔW = s·B·A with s = lora_alpha / r (or / √r with rsLoRA), as in PEFT.
- ``delta``  ``{param}`` → ΔW, a dense change to one base parameter.
- ``sparse`` ``{param}.indices`` (flat int64) and ``{param}.values``: ΔW with zeros elsewhere.
- ``router`` the router's own parameters; its members are named in ``lineage`` and it is
             applied at run time, so it has no static delta.
- ``chain``  no tensors: an ordered list of member refs and the step each is asked
             (``config["members"]``, ``config["steps"]``), applied call by call at run
             time (``evaluate.chain``); no static delta either.

Extra tensors that are not a change of the base (a classification head, say) live under
the ``head.`` prefix and are applied by the code that builds the task model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from . import __version__

KINDS = ("lora", "delta", "sparse", "router", "chain")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$", re.ASCII)


class SkillError(ValueError):
    """Bad skill input: a one-line message meant for the user."""


def check_name(name: str, what: str = "name") -> str:
    """Names are ASCII letters, digits and ``._-``, not starting with ``-`` (it would read
    as an option) and no path tricks like ``..``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", "..") \
            or len(name) > 128 or name.startswith("-"):
        raise SkillError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-' (not starting "
            "with '-'; not '.' or '..')"
        )
    return name


@dataclass
class Skill:
    """One version of a skill. ``version`` and ``content_hash`` are set by the library."""

    name: str
    kind: str
    base: str  # fingerprint of the base model it was made on
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # e.g. the LoRA config
    recipe: dict[str, Any] = field(default_factory=dict)  # method, hyper-parameters, data, seed
    lineage: list[str] = field(default_factory=list)  # parent refs "name@version"
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    content_hash: str = ""
    tags: list[str] = field(default_factory=list)
    made_by: str = field(default_factory=lambda: f"skillbank {__version__}")  # the code that made it

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.kind not in KINDS:
            raise SkillError(f"unknown skill kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version is not None else self.name

    def manifest(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready data."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "base": self.base,
            "config": self.config,
            "recipe": self.recipe,
            "lineage": self.lineage,
            "metrics": self.metrics,
            "created": self.created,
            "content_hash": self.content_hash,
            "tags": self.tags,
            "made_by": self.made_by,
            "tensors": {k: [list(v.shape), str(v.dtype).removeprefix("torch.")]
                        for k, v in sorted(self.tensors.items())},
        }

    def num_params(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def delta(self) -> dict[str, torch.Tensor]:
        """What the skill does to the base: ``{param name: ΔW}`` (float32).

        Raises for ``router`` skills, which act per input at run time.
        """
        if self.kind == "lora":
            return lora_delta(self.tensors, self.config)
        if self.kind == "delta":
            return {k: v.float() for k, v in self.tensors.items() if not k.startswith("head.")}
        if self.kind == "sparse":
            shapes = self.config.get("shapes", {})
            out = {}
            for key in self.tensors:
                if key.endswith(".indices"):
                    param = key.removesuffix(".indices")
                    flat = torch.zeros(math.prod(shapes[param]))
                    flat[self.tensors[key].long()] = self.tensors[param + ".values"].float()
                    out[param] = flat.view(shapes[param])
            return out
        raise SkillError(f"skill {self.ref} is a {self.kind}: it is applied per input, not as ΔW")

    def delta_params(self) -> dict[str, tuple[int, ...]]:
        """``{param name: shape of its ΔW}``, without computing any ΔW."""
        if self.kind == "lora":
            out = {}
            for module in lora_modules(self.tensors):
                r_in = self.tensors[f"{module}.lora_A.weight"].shape[1]
                r_out = self.tensors[f"{module}.lora_B.weight"].shape[0]
                out[f"{module}.weight"] = (r_in, r_out) if self.config.get("fan_in_fan_out") else (r_out, r_in)
            return out
        if self.kind == "delta":
            return {k: tuple(v.shape) for k, v in self.tensors.items() if not k.startswith("head.")}
        if self.kind == "sparse":
            shapes = self.config.get("shapes", {})
            return {k.removesuffix(".indices"): tuple(shapes[k.removesuffix(".indices")])
                    for k in self.tensors if k.endswith(".indices")}
        raise SkillError(f"skill {self.ref} is a {self.kind}: it is applied per input, not as ΔW")

    def delta_of(self, param: str) -> torch.Tensor:
        """The ΔW of one parameter (float32), computed alone: a merge streams through a
        model one parameter at a time instead of holding every member's whole ΔW."""
        if self.kind == "lora":
            module = param.removesuffix(".weight")
            part = {k: self.tensors[k] for k in (f"{module}.lora_A.weight", f"{module}.lora_B.weight")}
            return lora_delta(part, self.config)[param]
        if self.kind == "delta":
            return self.tensors[param].float()
        if self.kind == "sparse":
            shape = self.config.get("shapes", {})[param]
            flat = torch.zeros(math.prod(shape))
            flat[self.tensors[param + ".indices"].long()] = self.tensors[param + ".values"].float()
            return flat.view(shape)
        raise SkillError(f"skill {self.ref} is a {self.kind}: it is applied per input, not as ΔW")

    def head(self) -> dict[str, torch.Tensor]:
        """Task-head tensors the skill carries (e.g. a classifier), prefix stripped."""
        return {k.removeprefix("head."): v for k, v in self.tensors.items() if k.startswith("head.")}

    def heads(self) -> dict[str, dict[str, Any]]:
        """``{task: {"weight", "bias", "labels"}}``: the classification heads the skill
        carries, by the task each answers. A trained classifier has one (``head.weight``,
        ``head.bias``, ``config["labels"]``, for its recipe's task); a merge of classifiers
        keeps every member's beside the shared encoder (``head.TASK.weight``, …, with
        ``config["heads"] = {task: labels}``). A skill with no head gives ``{}``."""
        named = self.config.get("heads")
        if isinstance(named, dict):
            return {t: {"weight": self.tensors[f"head.{t}.weight"],
                        "bias": self.tensors[f"head.{t}.bias"], "labels": list(labels)}
                    for t, labels in named.items()}
        head, labels, task = self.head(), self.config.get("labels"), self.recipe.get("task")
        if set(head) == {"weight", "bias"} and labels and isinstance(task, str):
            return {task: {**head, "labels": list(labels)}}
        return {}


MAX_LORA_ALPHA = 1e6


def check_lora_config(config: dict[str, Any], where: str) -> None:
    """SkillError unless a LoRA config's ``r`` is a positive integer, ``lora_alpha`` a finite
    positive number of at most 1e6 and ``use_rslora`` a boolean (where they are given)."""
    r, alpha = config.get("r"), config.get("lora_alpha")
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise SkillError(f"{where}: r must be a positive integer, got {r!r}")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)
                              or not math.isfinite(alpha) or not 0 < alpha <= MAX_LORA_ALPHA):
        raise SkillError(f"{where}: lora_alpha must be a positive finite number of at most "
                         f"{MAX_LORA_ALPHA:g}, got {alpha!r}")
    if not isinstance(config.get("use_rslora", False), bool):
        raise SkillError(f"{where}: use_rslora must be true or false, got {config['use_rslora']!r}")


def check_tensors(skill: Skill) -> None:
    """SkillError unless every tensor is a finite float, or the int64 indices of a sparse
    skill, and a LoRA skill's config is sound (:func:`check_lora_config`)."""
    if skill.kind == "lora":
        check_lora_config(skill.config, f"skill {skill.name}")
    check_heads(skill)
    for key, t in skill.tensors.items():
        if not isinstance(t, torch.Tensor):
            raise SkillError(f"skill {skill.name}: {key} is not a tensor")
        if skill.kind == "sparse" and key.endswith(".indices"):
            if t.dtype != torch.int64:
                raise SkillError(f"skill {skill.name}: {key} must be int64 indices, not {t.dtype}")
            continue
        if not t.is_floating_point():
            raise SkillError(f"skill {skill.name}: tensor {key} is {t.dtype}; skills hold floats")
        if not bool(torch.isfinite(t).all()):
            raise SkillError(f"skill {skill.name}: tensor {key} holds NaN or Inf")


def check_heads(skill: Skill) -> None:
    """SkillError unless every classification head the config names is there, shaped
    ``[len(labels), hidden]`` and ``[len(labels)]``, with distinct string labels."""
    named = skill.config.get("heads")
    if named is None:
        return
    if not isinstance(named, dict) or not named:
        raise SkillError(f"skill {skill.name}: config 'heads' must map tasks to label lists")
    for task, labels in named.items():
        if not (isinstance(labels, list) and len(labels) >= 2
                and all(isinstance(x, str) for x in labels) and len(set(labels)) == len(labels)):
            raise SkillError(f"skill {skill.name}: head {task!r} needs two or more distinct "
                             "string labels")
        w, b = skill.tensors.get(f"head.{task}.weight"), skill.tensors.get(f"head.{task}.bias")
        if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor) or w.dim() != 2 \
                or tuple(b.shape) != (len(labels),) or w.shape[0] != len(labels):
            raise SkillError(f"skill {skill.name}: head {task!r} is missing or not shaped "
                             f"for its {len(labels)} labels")


def lora_scale(config: dict[str, Any], rank: int) -> float:
    """PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    alpha = config.get("lora_alpha", rank)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def lora_modules(tensors: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k.removesuffix(".lora_A.weight") for k in tensors if k.endswith(".lora_A.weight"))


def lora_delta(tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """ΔW = s·B·A per module (transposed when the base stores W as in×out, fan_in_fan_out)."""
    out = {}
    for module in lora_modules(tensors):
        a = tensors[f"{module}.lora_A.weight"].float()
        b = tensors[f"{module}.lora_B.weight"].float()
        dw = lora_scale(config, a.shape[0]) * (b @ a)
        out[f"{module}.weight"] = dw.T if config.get("fan_in_fan_out") else dw
    return out


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(kind: str, base: str, config: dict[str, Any], blob_sha: str) -> str:
    """Identity of a skill's content: same tensors, kind, config and base → same hash."""
    payload = canonical_json({"kind": kind, "base": base, "config": config, "blob": blob_sha})
    return hashlib.sha256(payload.encode()).hexdigest()
