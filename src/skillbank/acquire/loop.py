"""One training loop for bases and skills: AdamW, warm-up then cosine decay, resumable.

A checkpoint holds the trainable tensors, AdamW's moments and the loss curve, all in
safetensors + JSON (never a pickle). Batches come from a ``Sampler`` that depends only
on (seed, step), so resuming from step k gives the same tensors as never stopping.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .data import Sampler, training_batch


@dataclass
class LoopConfig:
    steps: int = 300
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 50

    @classmethod
    def of(cls, recipe) -> LoopConfig:
        """The loop a recipe's own fields set (steps, lr, warmup, weight decay, clipping)."""
        return cls(steps=recipe.steps, lr=recipe.lr, warmup=recipe.warmup,
                   weight_decay=recipe.weight_decay, grad_clip=recipe.grad_clip)


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 10% of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def stalled(scores: list[tuple[int, float]], patience: int) -> bool:
    """Pure: whether the last ``patience`` validation scores (higher is better) all fail to
    beat the best one before them — the early-stopping rule."""
    if patience < 1 or len(scores) <= patience:
        return False
    before = max(v for _, v in scores[:-patience])
    return max(v for _, v in scores[-patience:]) <= before


def _save(ckpt: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.AdamW,
          step: int, curve: list[tuple[int, float]], running: list[float],
          val: list[tuple[int, float]] | None = None,
          best: dict[str, torch.Tensor] | None = None) -> None:
    tensors = {f"param/{k}": v.detach().clone() for k, v in params.items()}
    tensors |= {f"best/{k}": v for k, v in (best or {}).items()}
    index = {id(p): k for k, p in params.items()}
    for p, state in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"{key}/{index[id(p)]}"] = state[key].clone()
        tensors[f"step/{index[id(p)]}"] = torch.as_tensor(state["step"],
                                                          dtype=torch.float64).reshape(1)
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / f"state.{os.getpid()}.part"
    # the step, curve and losses since the last curve point travel inside the tensors file, so
    # a stop between the two renames cannot pair new tensors with old metadata
    meta = json.dumps({"step": step, "curve": curve, "running": running, "val": val or []})
    save_file(tensors, tmp, metadata={"meta": meta})
    os.replace(tmp, ckpt / "state.safetensors")
    meta_tmp = ckpt / f"meta.{os.getpid()}.part"
    meta_tmp.write_text(meta)
    os.replace(meta_tmp, ckpt / "meta.json")


def _load(ckpt: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.AdamW):
    with safe_open(ckpt / "state.safetensors", framework="pt") as f:
        embedded = (f.metadata() or {}).get("meta")
    meta = json.loads(embedded or (ckpt / "meta.json").read_text())
    tensors = load_file(ckpt / "state.safetensors")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[f"param/{k}"])
    for k, p in params.items():
        if f"exp_avg/{k}" in tensors:
            opt.state[p] = {"step": torch.tensor(float(tensors[f"step/{k}"].item())),
                            "exp_avg": tensors[f"exp_avg/{k}"],
                            "exp_avg_sq": tensors[f"exp_avg_sq/{k}"]}
    step, curve, running = meta["step"], [tuple(x) for x in meta["curve"]], list(meta.get("running", []))
    val = [(int(a), float(b)) for a, b in meta.get("val", [])]
    if not isinstance(step, int) or step < 0 or not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ValueError("its step or tensors are not a run's")
    best = {k: tensors[f"best/{k}"] for k in params if f"best/{k}" in tensors}
    if val and len(best) != len(params):
        raise ValueError("its validation scores have no best weights beside them")
    return step, curve, running, (val, best)


def _resume(ckpt: Path, params: dict[str, torch.nn.Parameter], opt: torch.optim.AdamW, steps: int):
    """``(step, curve, running, validation scores, why)`` from the checkpoint; a checkpoint that cannot be a
    state of this run (damaged, truncated, another shape, past the end) is deleted and the
    run starts again from its first step, which by determinism gives the same skill —
    ``why`` says so and lands in the skill's training metrics."""
    before = {k: p.detach().clone() for k, p in params.items()}
    try:
        step, curve, running, val = _load(ckpt, params, opt)   # val: (scores, best weights)
        if step > steps:
            raise ValueError(f"it is at step {step} of a {steps}-step run")
        return step, curve, running, val, None
    except Exception as e:  # noqa: BLE001 - any failure means: not a usable state of this run
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(before[k])
        opt.state.clear()
        shutil.rmtree(ckpt, ignore_errors=True)
        return 0, [], [], ([], {}), f"checkpoint {ckpt} was unusable ({type(e).__name__}: {e}"[:300] + "); restarted"


def train(model: torch.nn.Module, params: dict[str, torch.nn.Parameter], sampler: Sampler,
          tokenizer, cfg: LoopConfig, checkpoint: Path | None = None,
          progress=None, log_every: int = 10, make_batch=training_batch,
          on_step=None, extra_loss=None, validate=None, val_every: int = 0,
          patience: int = 0) -> dict:
    """Train ``params`` of ``model`` on the sampler's batches; returns the loss curve.

    ``progress`` is a callable ``(step, loss)`` (the CLI passes a rich progress bar).
    ``make_batch(tokenizer, examples)`` turns a sampler batch into the model's keyword
    arguments (default: answer-only ``training_batch``; classifiers pass their own).
    ``on_step(step, opt)`` runs after each optimizer step (``step`` counts steps done): a
    curriculum re-weights its sampler there, LESS snapshots parameters and AdamW moments.
    ``extra_loss()``, if given, returns a scalar added to the model's loss every step (a
    regulariser: EWC's penalty, O-LoRA's orthogonality); the logged loss is that sum.
    Tokens per second count every non-pad token that went through the model.

    Early stopping: with ``validate`` (a callable giving a score, higher is better, on
    held-out rows) and ``val_every`` > 0, the model is scored every ``val_every`` steps and
    after the last; training stops once ``patience`` scores in a row fail to beat the best
    before them (:func:`stalled`), and the weights that scored best (the earliest of equal
    scores) are the result. The scores and the best weights travel in checkpoints, so a
    resumed run ends where an uninterrupted one would.
    """
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, curve, running, val, best, restarted = 0, [], [], [], {}, None
    if checkpoint is not None and (checkpoint / "meta.json").exists():
        start, curve, running, (val, best), restarted = _resume(checkpoint, params, opt, cfg.steps)
    stopped = None
    model.train()
    tokens, t0 = 0, time.perf_counter()
    for step in range(start, cfg.steps):
        batch = make_batch(tokenizer, sampler.batch(step))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(**batch).loss
        if extra_loss is not None:
            loss = loss + extra_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params.values(), cfg.grad_clip)
        opt.step()
        tokens += int(batch["attention_mask"].sum())
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            curve.append((step + 1, sum(running) / len(running)))
            running = []
        if progress is not None:
            progress(step + 1, loss.item())
        if on_step is not None:
            on_step(step + 1, opt)
        if validate is not None and val_every > 0 and \
                ((step + 1) % val_every == 0 or step + 1 == cfg.steps):
            model.eval()
            with torch.no_grad():
                score = float(validate())
            model.train()
            if not val or score > max(v for _, v in val):
                best = {k: p.detach().clone() for k, p in params.items()}
            val.append((step + 1, score))
            if step + 1 < cfg.steps and stalled(val, patience):
                stopped = step + 1
                if running:
                    curve.append((step + 1, sum(running) / len(running)))
                break
        if (checkpoint is not None and (step + 1) % cfg.checkpoint_every == 0
                and step + 1 < cfg.steps):
            _save(checkpoint, params, opt, step + 1, curve, running, val, best)
    if best:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(best[k])
    model.eval()
    seconds = time.perf_counter() - t0
    out = {"curve": curve, "resumed_from": start, "restarted": restarted, "seconds": seconds,
           "tokens_per_second": tokens / seconds if seconds > 0 else 0.0, "config": asdict(cfg)}
    if validate is not None and val_every > 0:
        out |= {"validation": val, "stopped_at": stopped,
                "best_step": max(val, key=lambda sv: (sv[1], -sv[0]))[0] if val else None}
    return out
