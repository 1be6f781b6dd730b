"""PEFT interchange: import a LoRA adapter directory as a skill and export a skill back.

A PEFT LoRA directory holds ``adapter_config.json`` and ``adapter_model.safetensors``
whose keys read ``base_model.model.<module>.lora_{A,B}.weight``. Import keeps the
tensors bit for bit (keys renamed to the base's module paths) and the config; export
writes them back, so export(import(dir)) holds the same tensors, plus a model card.
Pickled adapters (``adapter_model.bin``) are refused: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .base import Base, read_json_object
from .skill import Skill, SkillError, canonical_json, check_lora_config, lora_modules

PREFIX = "base_model.model."
# Config keys that describe where an adapter was written, not what it is.
_VOLATILE = {"base_model_name_or_path", "revision", "inference_mode", "auto_mapping"}
_UNSUPPORTED = {
    "use_dora": "DoRA adapters",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
    "modules_to_save": "extra trained modules (modules_to_save)",
    "layers_to_transform": "layer subsets (layers_to_transform)",
    "layer_replication": "replicated layers (layer_replication)",
    "alora_invocation_tokens": "activated LoRA adapters (alora_invocation_tokens)",
    "target_parameters": "LoRA on raw parameters (target_parameters)",
}


def _read_config(path: Path) -> dict[str, Any]:
    cfg = path / "adapter_config.json"
    config = read_json_object(cfg, f"{path}: no adapter_config.json (not a PEFT adapter directory)")
    if config.get("peft_type") != "LORA":
        raise SkillError(f"{cfg}: peft_type is {config.get('peft_type')!r}; only LORA adapters import")
    for key in ("r", "lora_alpha"):
        if key not in config:
            raise SkillError(f"{cfg}: no {key}")
    check_lora_config(config, str(cfg))
    for key, what in _UNSUPPORTED.items():
        if config.get(key):
            raise SkillError(f"{cfg}: {what} are not supported yet")
    if config.get("bias", "none") != "none":
        raise SkillError(f"{cfg}: bias={config['bias']!r} adapters are not supported (only 'none')")
    return config


def _map_module(module: str, params: dict[str, tuple[int, ...]]) -> str | None:
    """The base parameter a PEFT module path refers to, tolerating a task-model prefix
    (an adapter trained on ``BertForSequenceClassification`` names ``bert.encoder…``)."""
    parts = module.split(".")
    for drop in range(len(parts)):
        candidate = ".".join(parts[drop:])
        if f"{candidate}.weight" in params:
            return candidate
    return None


def _targets(target_modules: Any, module: str) -> bool:
    """Whether PEFT's ``target_modules`` (a list of names or a regular expression) selects
    ``module``: a name matches the module's path or its final components."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module) is not None
    return any(module == t or module.endswith(f".{t}") for t in target_modules)


def _check_targets(target_modules: Any, modules: list[str], cfg: Path) -> None:
    """The config's ``target_modules`` must select exactly the modules the tensors adapt
    (otherwise PEFT would fail on the export, or adapt modules it has no weights for)."""
    if target_modules is None:
        return
    if isinstance(target_modules, list) and not all(isinstance(t, str) for t in target_modules) \
            or not isinstance(target_modules, str | list):
        raise SkillError(f"{cfg}: target_modules must be a list of names or a regex string")
    try:
        stray = [m for m in modules if not _targets(target_modules, m)]
    except re.error as e:
        raise SkillError(f"{cfg}: target_modules is not a valid regex ({e})") from None
    if stray:
        raise SkillError(f"{cfg}: target_modules {target_modules!r} does not select {stray[0]}, "
                         "which the adapter's tensors adapt")
    if isinstance(target_modules, list):
        unused = [t for t in target_modules if not any(_targets([t], m) for m in modules)]
        if unused:
            raise SkillError(f"{cfg}: target_modules names {unused[0]!r}, but the adapter "
                             "holds no tensors for it")


def import_peft(path: str | Path, name: str, base: Base) -> Skill:
    """Read a PEFT LoRA adapter directory into a ``lora`` skill for ``base`` (not stored)."""
    path = Path(path)
    if not path.is_dir():
        raise SkillError(f"{path}: no such directory")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        if (path / "adapter_model.bin").exists():
            raise SkillError(
                f"{path}: adapter_model.bin is a pickle, which can run code when loaded; skillbank "
                "never unpickles. Re-save the adapter with safe_serialization=True"
            )
        raise SkillError(f"{path}: no adapter_model.safetensors")
    config = _read_config(path)
    try:
        raw = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise SkillError(f"{weights}: unreadable safetensors file ({e})") from None
    params = base.module_shapes()
    tensors = {}
    for key, t in raw.items():
        if not key.startswith(PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise SkillError(f"{weights}: unexpected tensor {key!r} (only LoRA A/B weights import)")
        module, _, which = key.removeprefix(PREFIX).rpartition(".lora_")
        target = _map_module(module, params)
        if target is None:
            raise SkillError(f"{weights}: module {module!r} is not in base {base.name}")
        if f"{target}.lora_{which}" in tensors:
            raise SkillError(f"{weights}: two tensors ({key!r} and another) are lora_{which} of "
                             f"the one module {target}")
        tensors[f"{target}.lora_{which}"] = t
    if not tensors:
        raise SkillError(f"{weights}: holds no tensors")
    for module in lora_modules(tensors):
        a = tensors[f"{module}.lora_A.weight"]
        b = tensors.get(f"{module}.lora_B.weight")
        if b is None:
            raise SkillError(f"{weights}: {module} has lora_A but no lora_B")
        out_f, in_f = params[f"{module}.weight"]
        if config.get("fan_in_fan_out"):
            out_f, in_f = in_f, out_f
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
            raise SkillError(
                f"{weights}: {module} has A{tuple(a.shape)} B{tuple(b.shape)}, which do not fit the "
                f"base's {out_f}x{in_f} weight"
            )
        if a.shape[0] != config["r"]:
            raise SkillError(
                f"{weights}: {module} has rank {a.shape[0]} but the config says r={config['r']}"
            )
    if len([k for k in tensors if k.endswith("lora_B.weight")]) != len(lora_modules(tensors)):
        raise SkillError(f"{weights}: a module has lora_B but no lora_A")
    _check_targets(config.get("target_modules"), lora_modules(tensors), cfg=path / "adapter_config.json")
    kept = {k: v for k, v in config.items() if k not in _VOLATILE}
    return Skill(
        name=name, kind="lora", base=base.fingerprint, tensors=tensors, config=kept,
        recipe={"method": "import", "source": str(path.resolve()),
                "source_base": config.get("base_model_name_or_path")},
    )


def model_card(skill: Skill, base: Base) -> str:
    """A README in the shape PEFT and mergekit write: YAML header, then the skill's story."""
    lineage = "\n".join(f"- `{p}`" for p in skill.lineage) or "- (none: trained or imported directly)"
    metrics = json.dumps(skill.metrics, indent=2, sort_keys=True, default=str)
    return f"""---
base_model: {base.path}
library_name: peft
tags:
- skillbank
- lora
---

# {skill.name} (version {skill.version})

A `{skill.kind}` skill exported by skillbank.

- Base model: **{base.name}**, fingerprint `{base.fingerprint}`
- Content hash: `{skill.content_hash}`
- Created: {skill.created}

## Lineage
{lineage}

## Recipe
Everything needed to make this skill again:

```json
{json.dumps(skill.recipe, indent=2, sort_keys=True, default=str)}
```

## Metrics
```json
{metrics}
```
"""


def _check_destination(path: Path, home: Path | None) -> None:
    """SkillError unless ``path`` is a new or empty real directory outside ``home``."""
    if path.is_symlink():
        raise SkillError(f"{path}: is a symbolic link; export to a real directory")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SkillError(f"{path}: exists and is not empty; refusing to overwrite")
    if home is not None and path.absolute().resolve().is_relative_to(home.absolute().resolve()):
        raise SkillError(f"{path}: is inside the library home {home}; export somewhere else")


def _write_whole(path: Path, tag: str, fill) -> Path:
    """``fill(tmp)`` writes a directory beside ``path``, which then replaces ``path``: whole
    or not at all (a failed write — a full disk, no permission — removes what it wrote)."""
    tmp = path.parent / f".skillbank-export-{os.getpid()}{tag}.part"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fill(tmp)
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except (OSError, SafetensorError, SkillError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SkillError(f"{path}: cannot export there ({why}); nothing was left behind") from None
    return path


def export_peft(skill: Skill, base: Base, path: str | Path, home: Path | None = None) -> Path:
    """Write ``skill`` as a PEFT LoRA adapter directory (which must not exist or be empty,
    and not lie inside the library ``home``, whose directories are the library's own). The
    directory appears whole or not at all: a failed write (a full disk, no permission)
    removes what it wrote."""
    if skill.kind != "lora":
        raise SkillError(f"skill {skill.ref} is a {skill.kind}; only lora skills export to PEFT")
    path = Path(path)
    _check_destination(path, home)
    modules = lora_modules(skill.tensors)
    config = dict(skill.config)
    config.setdefault("peft_type", "LORA")
    config.setdefault("r", int(skill.tensors[f"{modules[0]}.lora_A.weight"].shape[0]))
    config.setdefault("lora_alpha", config["r"])
    config.setdefault("target_modules", sorted({m.rsplit(".", 1)[-1] for m in modules}))
    config.setdefault("task_type", "CAUSAL_LM" if base.kind == "causal" else "FEATURE_EXTRACTION")
    config["base_model_name_or_path"] = str(base.path)

    def fill(tmp: Path) -> None:
        tensors = {f"{PREFIX}{k}": v.contiguous() for k, v in skill.tensors.items()}
        save_file(tensors, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(model_card(skill, base))
        (tmp / "skillbank.json").write_text(canonical_json(skill.manifest()) + "\n")

    return _write_whole(path, "", fill)


def export_chain(chain: Skill, members: list[Skill], base: Base, path: str | Path,
                 home: Path | None = None) -> Path:
    """Write a ``chain`` skill as a directory: ``chain.json`` (its manifest: members, steps,
    world, recipe) and each LoRA member as a PEFT adapter under ``members/NAME@VERSION``.
    Whole or not at all, as :func:`export_peft`."""
    if chain.kind != "chain":
        raise SkillError(f"skill {chain.ref} is a {chain.kind}, not a chain")
    bad = [m.ref for m in members if m.kind != "lora"]
    if bad:
        raise SkillError(f"chain {chain.ref}: member(s) {', '.join(bad)} are not LoRA skills; "
                         "only LoRA members export as PEFT adapters")
    path = Path(path)
    _check_destination(path, home)

    def fill(tmp: Path) -> None:
        (tmp / "members").mkdir()
        for m in {m.ref: m for m in members}.values():
            export_peft(m, base, tmp / "members" / m.ref, home=home)
        (tmp / "chain.json").write_text(json.dumps(chain.manifest(), indent=2, sort_keys=True) + "\n")

    return _write_whole(path, ".chain", fill)
