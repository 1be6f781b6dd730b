"""Merging skills: load members' ΔW, merge per weight matrix, store as a new skill.

The maths lives in ``merge.py``; this module lines up the members' parameters, chooses
the output form and records what was lost. Output is a ``delta`` skill (exact ΔW), or,
with ``rank``, a LoRA re-factored by truncated SVD whose relative Frobenius error
‖ΔW − B'A'‖/‖ΔW‖ per matrix is written to the manifest. ``cat`` stays an exact LoRA. ``graft_union``
merges ``sparse`` skills into a ``sparse`` skill: exact where the grafts are disjoint; the
overlapping entries (and the rule used on them, ``MergeSpec.on_overlap``) are counted in
the manifest.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch

from ..arch import LAYER_INDEX
from ..base import Base
from ..skill import Skill, SkillError, lora_modules, lora_scale
from . import merge
from .fisher import fisher_merge
from .heads import with_heads
from .knots import knots
from .regmean import average as regmean_average
from .regmean import regmean
from .stats import member_stats, stored_member_stats

METHODS = ("linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune",
           "cat", "layer_swap", "graft_union", "knots", "regmean", "fisher")
DATA_AWARE = {"regmean": "gram", "fisher": "fisher"}  # method → the member statistics it needs
_LAYER = LAYER_INDEX  # a parameter's block: its first numeric path component
_CHUNK = 1 << 18  # entries per chunk of the diagnostics' float64 dot products


@dataclass
class MergeSpec:
    method: str
    weights: list[float] | None = None
    density: float = 0.2
    rank: int | None = None
    seed: int = 0
    sign_method: str = "total"
    convention: str = "peft"
    swap: list[int] | None = None  # layer_swap: member index for each layer
    on_overlap: str = "mean"  # graft_union: mean | sum | refuse where grafts share an entry
    inner: str = "ties"  # knots: the merge of the aligned vectors (ties | linear)
    alpha: float = 0.9  # regmean: off-diagonal shrinkage of the Gram matrices
    examples: int = 64  # regmean, fisher: unlabeled inputs per member for its statistics
    rank_budget: float | None = None  # re-factor to the smallest rank with error ≤ this

    def check(self, n: int) -> None:
        if self.method not in METHODS:
            raise SkillError(f"unknown merge method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.weights is not None and len(self.weights) != n:
            raise SkillError(f"{n} skills but {len(self.weights)} weights")
        if self.weights is not None and not all(math.isfinite(w) and abs(w) <= 1e6 for w in self.weights):
            raise SkillError(f"weights must be finite numbers of at most 1e6 in size, got {self.weights}")
        if not math.isfinite(self.density):
            raise SkillError(f"density must be a finite number, got {self.density}")
        if not 0.0 < self.density <= 1.0:
            raise SkillError(f"density must be in (0, 1], got {self.density}")
        if self.on_overlap not in ("mean", "sum", "refuse"):
            raise SkillError(f"on_overlap must be mean, sum or refuse, not {self.on_overlap!r}")
        if self.method == "graft_union" and self.rank is not None:
            raise SkillError("graft_union keeps the grafts sparse: it takes no rank")
        if self.rank is not None and self.rank < 1:
            raise SkillError(f"rank must be ≥ 1, got {self.rank}")
        if self.rank_budget is not None:
            if self.rank is not None:
                raise SkillError("give a rank or a rank budget, not both")
            if not (isinstance(self.rank_budget, int | float) and 0.0 <= self.rank_budget < 1.0):
                raise SkillError(f"rank budget is a relative error in [0, 1), got {self.rank_budget}")
            if self.method in ("cat", "graft_union"):
                raise SkillError(f"{self.method} keeps its form: it takes no rank budget")
        if self.inner not in ("ties", "linear"):
            raise SkillError(f"inner must be ties or linear, not {self.inner!r}")
        if not (isinstance(self.alpha, int | float) and 0.0 <= self.alpha <= 1.0):
            raise SkillError(f"alpha must be in [0, 1], got {self.alpha}")
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) \
                or not 1 <= self.examples <= 100_000:
            raise SkillError(f"examples must be an integer in [1, 100000], got {self.examples!r}")


def check_members(skills: Sequence[Skill]) -> None:
    if len(skills) < 1:
        raise SkillError("merge needs at least one skill")
    bases = {s.base for s in skills}
    if len(bases) > 1:
        raise SkillError("skills come from different bases: "
                         + ", ".join(f"{s.ref}={s.base[:12]}" for s in skills))


def delta_params(skills: Sequence[Skill]) -> dict[str, tuple[int, ...]]:
    """``{param: ΔW shape}`` over the union of the members' parameters, sorted by name."""
    shapes: dict[str, tuple[int, ...]] = {}
    for s in skills:
        for p, shape in s.delta_params().items():
            if shapes.setdefault(p, shape) != shape:
                raise SkillError(f"{p} has ΔW shape {shape} in {s.ref}, {shapes[p]} elsewhere")
    return dict(sorted(shapes.items()))


def iter_aligned(skills: Sequence[Skill]) -> Iterator[tuple[str, list[torch.Tensor]]]:
    """``(param, [ΔW_i])`` one parameter at a time (zeros where a member has none): memory
    is the members' ΔW of the largest parameter, not of the model."""
    has = [set(s.delta_params()) for s in skills]
    for p, shape in delta_params(skills).items():
        yield p, [s.delta_of(p) if p in h else torch.zeros(shape) for s, h in zip(skills, has, strict=True)]
        _return_freed_memory()


def _load_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_trim()


def _return_freed_memory() -> None:
    """Hand the heap pages freed so far back to the system. glibc keeps them otherwise: the
    small tensors a merge keeps (factors, errors) land between the big ΔW it frees and pin
    the heap, and a streamed merge's memory would grow with the model after all
    (``benchmarks/merge_memory.py``: 0.52 → 1.31 GiB from 2 to 8 layers without this)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def aligned_deltas(skills: Sequence[Skill]) -> dict[str, list[torch.Tensor]]:
    """``{param: [ΔW_i]}`` over the union of parameters, all at once (for methods that
    optimise over every parameter together: LoRAHub, AdaMerging)."""
    return dict(iter_aligned(skills))


def merge_param(taus: list[torch.Tensor], spec: MergeSpec, param: str, index: int,
                stats: list[dict[str, torch.Tensor]] | None = None) -> torch.Tensor:
    m, w = spec.method, spec.weights
    if m == "knots":
        return knots(taus, w, spec.inner, spec.density, spec.sign_method, spec.convention)
    if m == "regmean":
        grams = [s.get(param) for s in stats]
        if taus[0].dim() != 2 or any(g is None for g in grams):
            return regmean_average(taus)
        return regmean(taus, grams, spec.alpha, w)
    if m == "fisher":
        fishers = [s.get(param, torch.zeros_like(t)) for s, t in zip(stats, taus, strict=True)]
        return fisher_merge(taus, fishers, w)
    seed = spec.seed * 100003 + index  # a distinct, reproducible DARE mask per matrix
    if m in ("linear", "task_arithmetic"):
        return merge.task_arithmetic(taus, w)
    if m == "ties":
        return merge.ties(taus, w, spec.density, spec.sign_method, spec.convention)
    if m == "dare_linear":
        return merge.dare(taus, w, spec.density, seed, "linear")
    if m == "dare_ties":
        return merge.dare(taus, w, spec.density, seed, "ties", spec.sign_method, spec.convention)
    if m == "magnitude_prune":
        return merge.magnitude_prune(taus, w, spec.density)
    if m == "layer_swap":
        layer = _LAYER.search(param)
        pick = spec.swap[int(layer.group(1))] if layer and spec.swap else 0
        scale = 1.0 if w is None else w[pick]
        return scale * taus[pick].float()
    raise SkillError(f"method {m} has no per-matrix form")


def _cat(skills: Sequence[Skill], spec: MergeSpec) -> tuple[dict, dict]:
    if any(s.kind != "lora" for s in skills):
        raise SkillError("cat merges LoRA skills only: " + ", ".join(f"{s.ref} is {s.kind}" for s in skills))
    modules = sorted(set().union(*[lora_modules(s.tensors) for s in skills]))
    tensors = {}
    for mod in modules:
        ka, kb = f"{mod}.lora_A.weight", f"{mod}.lora_B.weight"
        have = next(s for s in skills if ka in s.tensors)
        in_f, out_f = have.tensors[ka].shape[1], have.tensors[kb].shape[0]
        As, Bs, scales = [], [], []
        for s in skills:  # a member without this module contributes zero blocks: rank stays Σ r_i
            r = int(s.config.get("r", s.tensors[lora_modules(s.tensors)[0] + ".lora_A.weight"].shape[0]))
            As.append(s.tensors.get(ka, torch.zeros(r, in_f)))
            Bs.append(s.tensors.get(kb, torch.zeros(out_f, r)))
            scales.append(lora_scale(s.config, As[-1].shape[0]))
        tensors[ka], tensors[kb] = merge.cat_lora(As, Bs, scales, spec.weights)
    ranks = {t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")}
    if len(ranks) > 1:
        raise SkillError("cat: members have different ranks in different modules; not supported")
    r = ranks.pop()
    config = {"peft_type": "LORA", "r": r, "lora_alpha": r, "bias": "none", "fan_in_fan_out": False,
              "target_modules": sorted({m.rsplit(".", 1)[-1] for m in modules}), "use_rslora": False}
    return tensors, config


def _graft_union(skills: Sequence[Skill], spec: MergeSpec) -> tuple[dict, dict, dict]:
    """Tensors and config of the union of sparse skills, and the overlap counts."""
    if any(s.kind != "sparse" for s in skills):
        raise SkillError("graft_union merges sparse skills only (make them with `skillbank "
                         "localize`): " + ", ".join(f"{s.ref} is {s.kind}" for s in skills))
    shapes: dict[str, list[int]] = {}
    for s in skills:
        for p, shape in s.config.get("shapes", {}).items():
            if shapes.setdefault(p, list(shape)) != list(shape):
                raise SkillError(f"graft_union: {p} has shape {shape} in {s.ref}, "
                                 f"{shapes[p]} elsewhere")
    tensors, per, total = {}, {}, 0
    for p in sorted(shapes):
        n = math.prod(shapes[p])
        values, masks = [], []
        for s in skills:
            v, m = torch.zeros(n), torch.zeros(n, dtype=torch.bool)
            if f"{p}.indices" in s.tensors:
                idx = s.tensors[f"{p}.indices"].long()
                v[idx], m[idx] = s.tensors[f"{p}.values"].float(), True
            values.append(v)
            masks.append(m)
        try:
            merged, per[p] = merge.graft_union(values, masks, spec.weights, spec.on_overlap)
        except ValueError as e:
            raise SkillError(f"graft_union on {p}: {e}") from None
        keep = torch.stack(masks).any(0)
        idx = torch.nonzero(keep).reshape(-1).to(torch.int64)
        total += idx.numel()
        if idx.numel():
            tensors[f"{p}.indices"], tensors[f"{p}.values"] = idx, merged[idx].clone()
    sizes = [sum(t.numel() for k, t in s.tensors.items() if k.endswith(".indices"))
             for s in skills]
    stats = {"on_overlap": spec.on_overlap, "entries": total, "member_entries": sizes,
             "overlapping_entries": sum(per.values()),
             "overlapping_per_param": {p: c for p, c in per.items() if c}}
    return tensors, {"shapes": {p: shapes[p] for p in sorted(shapes)}}, stats


def member_statistics(base: Base | None, skills: Sequence[Skill], spec: MergeSpec,
                      params: Sequence[str], lib=None) -> list[dict[str, torch.Tensor]] | None:
    """Each member's statistics for a data-aware ``spec`` (``stats.member_stats``; kept
    with the member in ``lib`` when given), else None."""
    kind = DATA_AWARE.get(spec.method)
    if kind is None:
        return None
    if base is None:
        raise SkillError(f"{spec.method} needs the base, to compute the members' {kind} statistics")
    if lib is not None:
        return [stored_member_stats(lib, base, s, kind, params, spec.examples, spec.seed)
                for s in skills]
    return [member_stats(base, s, kind, params, spec.examples, spec.seed) for s in skills]


def merge_skills(name: str, skills: Sequence[Skill], spec: MergeSpec, base: Base | None = None,
                 stats: list[dict[str, torch.Tensor]] | None = None, lib=None) -> Skill:
    """Merge ``skills`` into a new (unsaved) skill whose lineage names every member; a
    data-aware method (``DATA_AWARE``) computes its members' statistics on ``base`` (or
    takes them as ``stats``, computed by :func:`member_statistics` for the same spec; with
    ``lib`` they are read from, or kept with, each member)."""
    check_members(skills)
    spec.check(len(skills))
    if base is not None and base.fingerprint != skills[0].base:
        raise SkillError(f"the members were made on base {skills[0].base[:12]}, not {base.name}")
    errors: dict[str, float] = {}
    extra: dict = {}
    if spec.method == "graft_union":
        tensors, config, extra["graft_union"] = _graft_union(skills, spec)
        kind, errors = "sparse", {"max": 0.0, "mean": 0.0}
        if spec.on_overlap != "refuse" and extra["graft_union"]["overlapping_entries"]:
            errors["note"] = "exact except on the overlapping entries (graft_union counts)"
        extra["diagnostics"] = diagnostics(skills)
    elif spec.method == "cat":
        tensors, config = _cat(skills, spec)
        kind, errors = "lora", {"max": 0.0, "mean": 0.0}
        extra["diagnostics"] = diagnostics(skills)
    else:
        shapes = delta_params(skills)
        if stats is None:
            stats = member_statistics(base, skills, spec, list(shapes), lib)
        rank = spec.rank
        limit = min((min(sh) for sh in shapes.values() if len(sh) == 2), default=0)
        if rank is not None and rank > limit:
            raise SkillError(f"rank {rank} is more than the smallest merged matrix "
                             f"allows ({limit}); without a rank the merge is exact")
        merged, factored, per = {}, {}, {}
        diag = Diagnostics([s.ref for s in skills])
        for i, (p, t) in enumerate(iter_aligned(skills)):  # one parameter in memory at a time
            diag.add(p, t)
            dw = merge_param(t, spec, p, i, stats)
            if rank is not None:  # factored at once: only the small factors are kept
                factored[p] = merge.svd_factor(dw, rank)
            else:
                merged[p] = dw
        if spec.rank_budget is not None:
            rank = max((merge.rank_for_error(dw, spec.rank_budget) for dw in merged.values()
                        if dw.ndim == 2), default=1)
            if rank > limit:
                raise SkillError(f"no LoRA rank meets the budget {spec.rank_budget:g}: it needs "
                                 f"rank {rank}, more than the smallest merged matrix allows ({limit})")
            extra["rank_budget"] = {"budget": spec.rank_budget, "rank": rank}
            factored = {p: merge.svd_factor(dw, rank) for p, dw in merged.items()}
        if rank is None:
            tensors, config, kind = merged, {}, "delta"
            errors = {"max": 0.0, "mean": 0.0}
        else:
            tensors = {}
            for p, (a, b, per[p]) in factored.items():
                mod = p.removesuffix(".weight")
                tensors[f"{mod}.lora_A.weight"], tensors[f"{mod}.lora_B.weight"] = a, b
            config = {"peft_type": "LORA", "r": rank, "lora_alpha": rank, "bias": "none",
                      "fan_in_fan_out": False, "use_rslora": False,
                      "target_modules": sorted({p.removesuffix(".weight").rsplit(".", 1)[-1] for p in factored})}
            kind = "lora"
            errors = {"max": max(per.values(), default=0.0),
                      "mean": sum(per.values()) / max(1, len(per)), "per_matrix": per}
        extra["diagnostics"] = diag.result()
    recipe = {"method": "merge", **asdict(spec), "members": [s.ref for s in skills]}
    return with_heads(Skill(name=name, kind=kind, base=skills[0].base, tensors=tensors,
                            config=config, recipe=recipe, lineage=[s.ref for s in skills],
                            metrics={"merge_error": errors, **extra}), skills)


class Diagnostics:
    """Pairwise cosine of the members' whole ΔW and the sign-conflict share per matrix,
    accumulated one parameter at a time (``add``), so a merge computes them in its own pass."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.dots = torch.zeros(len(names), len(names), dtype=torch.float64)
        self.conflicts: dict[str, float] = {}

    def add(self, param: str, taus: Sequence[torch.Tensor]) -> None:
        flat = [t.reshape(-1) for t in taus]
        for at in range(0, flat[0].numel(), _CHUNK):  # float64 a chunk at a time: small peak
            part = torch.stack([f[at: at + _CHUNK].double() for f in flat])
            self.dots += part @ part.T
        if len(taus) > 1:
            self.conflicts[param] = merge.sign_conflicts(taus)

    def result(self) -> dict:
        n, norms = len(self.names), torch.sqrt(torch.diagonal(self.dots))

        def cos(i: int, j: int) -> float:
            if norms[i] == 0 or norms[j] == 0:
                return 0.0
            return float(self.dots[i, j] / (norms[i] * norms[j]))

        pairs = {f"{self.names[i]}|{self.names[j]}": cos(i, j)
                 for i in range(n) for j in range(i + 1, n)}
        c = self.conflicts
        return {"cosine": pairs, "sign_conflicts": c,
                "mean_sign_conflict": sum(c.values()) / max(1, len(c))}


def diagnostics(skills: Sequence[Skill]) -> dict:
    """:class:`Diagnostics` of the members, in one pass over their parameters."""
    d = Diagnostics([s.ref for s in skills])
    for p, taus in iter_aligned(skills):
        d.add(p, taus)
    return d.result()


def interference(skills: Sequence[Skill]) -> list[dict]:
    """Before merging: for every pair of members, the cosine of their whole ΔW (from
    :class:`Diagnostics`) and the share of the entries both change whose signs disagree (over
    the whole model, one parameter at a time). A pair with cosine near 0 and disagreement
    near 0.5 changes unrelated things in unrelated directions: a training-free merge of it
    is expected to lose both."""
    n = len(skills)
    diag = Diagnostics([s.ref for s in skills])
    both = torch.zeros(n, n, dtype=torch.float64)
    differ = torch.zeros(n, n, dtype=torch.float64)
    for p, taus in iter_aligned(skills):
        diag.add(p, taus)
        sign = torch.stack([t.reshape(-1) for t in taus]).sign()
        pos, neg = (sign > 0).float(), (sign < 0).float()
        both += ((pos + neg) @ (pos + neg).T).double()
        differ += (pos @ neg.T + neg @ pos.T).double()
    cosine = diag.result()["cosine"]
    rows = []
    for i in range(n):
        for j in range(i + 1, n):
            rows.append({"pair": [skills[i].ref, skills[j].ref],
                         "cosine": cosine[f"{skills[i].ref}|{skills[j].ref}"],
                         "sign_disagreement": float(differ[i, j] / both[i, j]) if both[i, j] else 0.0,
                         "shared_entries": int(both[i, j])})
    return rows
