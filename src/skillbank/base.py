"""A base model: a Hugging Face model directory on local disk, known by a fingerprint.

The fingerprint hashes the model's config and every weight tensor (name, dtype, shape,
bytes), so two copies of the same model match and any changed weight does not. Only
safetensors weights are read: a directory holding only pickled weights is refused.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .basefiles import is_tokenizer_file
from .fields import check_size
from .skill import Skill, SkillError, canonical_json

# Config keys that describe how a file was written, not what the model is.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path"}
FINGERPRINT_VERSION = 2  # 2: the tokenizer is part of a base's identity


@contextmanager
def quiet_loading():
    """Transformers' "Loading weights" progress bar off while a local model loads (a bar for
    a model read from disk in milliseconds is noise in every script and worker), then
    restored as it was."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


class BaseMismatch(SkillError):
    """A skill made on one base was applied to another."""


def weight_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        if pickled:
            raise SkillError(
                f"{path}: only pickled weights ({', '.join(pickled)}); skillbank reads safetensors "
                "only and never unpickles (convert with save_pretrained(safe_serialization=True))"
            )
        raise SkillError(f"{path}: no *.safetensors weights found")
    return files


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object from ``path``; every failure is a one-line SkillError (``missing`` if absent)."""
    if not path.is_file():
        raise SkillError(missing)
    try:
        data = check_size(json.loads(path.read_text()), str(path))
    except RecursionError:
        raise SkillError(f"{path}: nested too deeply to be a config") from None
    except json.JSONDecodeError as e:
        raise SkillError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise SkillError(f"{path}: not UTF-8 text, so not JSON") from None
    if not isinstance(data, dict):
        raise SkillError(f"{path}: expected a JSON object")
    return data


def read_config(path: Path) -> dict[str, Any]:
    return read_json_object(path / "config.json",
                            f"{path}: not a Hugging Face model directory (no config.json)")


def tokenizer_files(path: Path) -> list[Path]:
    """The files that define a model directory's tokenizer (Hugging Face's names)."""
    return sorted(p for p in path.iterdir() if p.is_file() and is_tokenizer_file(p.name))


def _tokenizer_bytes(file: Path) -> bytes:
    """A tokenizer file's bytes; JSON canonicalised without the keys that say where and by
    which version it was written (so two saves of one tokenizer match)."""
    data = file.read_bytes()
    if file.suffix == ".json":
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            return data
        if isinstance(obj, dict):
            obj = {k: v for k, v in obj.items() if k not in _VOLATILE_CONFIG_KEYS | {"name_or_path"}}
        return canonical_json(obj).encode()
    return data


def fingerprint(path: str | Path, version: int = FINGERPRINT_VERSION) -> str:
    """sha256 over the canonical config, every tensor of every safetensors file and (since
    fingerprint version 2) the tokenizer's files: the same weights with another tokenizer
    are another base. Version 1 (weights and config only) identifies bases added before."""
    path = Path(path)
    config = {k: v for k, v in read_config(path).items() if k not in _VOLATILE_CONFIG_KEYS}
    h = hashlib.sha256(canonical_json(config).encode())
    if version >= 2:
        for file in tokenizer_files(path):
            data = _tokenizer_bytes(file)
            h.update(f"tokenizer|{file.name}|{len(data)}|".encode())
            h.update(data)
    tensors: dict[str, tuple[Path, str]] = {}
    for file in weight_files(path):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                tensors[key] = (file, key)
    for key in sorted(tensors):
        file, _ = tensors[key]
        with safe_open(file, framework="pt") as f:
            t = f.get_tensor(key).contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


KINDS = ("causal", "encoder", "policy")


def detect_kind(config: dict[str, Any]) -> str:
    """``causal`` for generation models, ``policy`` for skillbank's policy network
    (``policynet``), ``encoder`` for the rest (classification skills)."""
    archs = config.get("architectures") or []
    if config.get("model_type") == "skillbank-policy":
        return "policy"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    return "encoder"


@dataclass
class Base:
    """A registered base: ``path`` is its model directory (inside the library home)."""

    name: str
    path: Path
    fingerprint: str
    kind: str  # "causal" | "encoder" | "policy"
    meta: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # as recorded when added

    def check(self, hashes: bool = True) -> None:
        """``BaseDamaged`` unless the directory holds the recorded files (sizes; sha256 too
        with ``hashes``, once per process and file state)."""
        from .basefiles import check

        check(self.name, self.path, self.files, hashes)

    @property
    def short(self) -> str:
        return self.fingerprint[:12]

    def model_class(self):
        from transformers import AutoModel, AutoModelForCausalLM

        if self.kind == "policy":
            from .policynet import PolicyModel

            return PolicyModel
        return AutoModelForCausalLM if self.kind == "causal" else AutoModel

    def load_model(self, skills: list[Skill] = (), dtype: torch.dtype = torch.float32):
        """The base model in eval mode, with the static skills' ΔW added to its weights."""
        self.check()
        with quiet_loading():
            model = self.model_class().from_pretrained(self.path, dtype=dtype)
        model.eval()
        for skill in skills:
            apply_skill(model, skill, self)
        return model

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        if self.kind == "policy":
            raise SkillError(f"base {self.name} is a policy: it reads states, not text")
        self.check()
        return AutoTokenizer.from_pretrained(self.path)

    def meta_model(self):
        """The model class built on the meta device from the config: structure, no weights."""
        from transformers import AutoConfig

        self.check(hashes=False)
        if self.kind == "policy":
            from .policynet import PolicyConfig

            config = PolicyConfig.from_pretrained(self.path)
        else:
            config = AutoConfig.from_pretrained(self.path)
        with torch.device("meta"):
            cls = self.model_class()
            return cls(config) if self.kind == "policy" else cls.from_config(config)

    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{parameter name: shape}`` of the model class, built on the meta device."""
        return {k: tuple(v.shape) for k, v in self.meta_model().named_parameters()}

    @property
    def arch(self):
        """The base's :class:`~skillbank.arch.Architecture`: recorded when it was added, or
        read off the model (a base registered before architectures were recorded)."""
        from .arch import Architecture, read_architecture

        if "arch" in self.meta:
            return Architecture.from_dict(self.meta["arch"])
        if "_arch" not in self.__dict__:
            self.__dict__["_arch"] = read_architecture(self.meta_model())
        return self.__dict__["_arch"]


def check_base(skill: Skill, base: Base) -> None:
    if skill.base != base.fingerprint:
        raise BaseMismatch(
            f"skill {skill.ref} was made on base {skill.base[:12]} but this base "
            f"({base.name}) is {base.fingerprint[:12]}; refusing to apply it"
        )


@torch.no_grad()
def apply_skill(model: torch.nn.Module, skill: Skill, base: Base, weight: float = 1.0) -> None:
    """Add ``weight``·ΔW of a static skill to the model's parameters, in place."""
    check_base(skill, base)
    params = dict(model.named_parameters())
    for name, dw in skill.delta().items():
        if name not in params:
            raise SkillError(f"skill {skill.ref} changes {name!r}, which base {base.name} lacks")
        p = params[name]
        if tuple(p.shape) != tuple(dw.shape):
            raise SkillError(
                f"skill {skill.ref}: ΔW for {name} has shape {tuple(dw.shape)}, "
                f"base has {tuple(p.shape)}"
            )
        p.add_(weight * dw.to(p.dtype))
