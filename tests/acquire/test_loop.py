"""The training loop: learning-rate schedule by hand, exact resume, pickle-free checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from skillbank.acquire.data import Sampler, char_tokenizer
from skillbank.acquire.loop import LoopConfig, lr_at, train
from skillbank.acquire.pretrain import tiny_config
from skillbank.worlds.strings import StringsWorld


@pytest.mark.parametrize("step, expected", [
    (0, 1e-3 * 1 / 4),        # warm-up: lr·(step+1)/warmup
    (1, 1e-3 * 2 / 4),
    (3, 1e-3),                # end of warm-up
    (4, 1e-3),                # cosine start: frac 0 → lr
    (12, 1e-3 * 0.55),        # half way (frac 8/16): 0.1 + 0.9·0.5·(1 + cos π/2) = 0.55
    (20, 1e-3 * 0.1),         # frac 1: 10% of lr
])
def test_lr_at_by_hand(step, expected):
    cfg = LoopConfig(steps=20, lr=1e-3, warmup=4)
    assert lr_at(step, cfg) == pytest.approx(expected, rel=1e-12)


def test_lr_at_quarter_and_monotone():
    cfg = LoopConfig(steps=104, lr=2.0, warmup=4)
    # frac 1/4: 0.1 + 0.45·(1 + cos π/4) = 0.1 + 0.45·(1 + √2/2)
    assert lr_at(29, cfg) == pytest.approx(2.0 * (0.1 + 0.45 * (1 + math.sqrt(2) / 2)))
    lrs = [lr_at(s, cfg) for s in range(cfg.steps + 1)]
    assert lrs[:4] == sorted(lrs[:4])
    assert lrs[4:] == sorted(lrs[4:], reverse=True)
    assert min(lrs) == pytest.approx(0.2)


# ------------------------------------------------------------------------------- resume

WORLD = StringsWorld()
TOK = char_tokenizer(WORLD.charset())
CFG = LoopConfig(steps=20, lr=3e-3, warmup=5, weight_decay=0.01, checkpoint_every=10)


def fresh_model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(len(TOK), "tiny", TOK))


def sampler():
    pools = {t: WORLD.examples(t, 64, seed=0) for t in ("rev", "sort")}
    return Sampler(pools, 8, seed=0)


class Interrupt(Exception):
    pass


def interrupt_at(at: int):
    def progress(step, loss):
        if step == at:
            raise Interrupt

    return progress


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def straight():
    model = fresh_model()
    log = train(model, dict(model.named_parameters()), sampler(), TOK, CFG)
    return state(model), log


def test_resume_gives_same_tensors(straight, tmp_path):
    want, log_straight = straight
    ckpt = tmp_path / "ckpt"
    model = fresh_model()
    with pytest.raises(Interrupt):      # checkpoint written at step 10, stopped at 12
        train(model, dict(model.named_parameters()), sampler(), TOK, CFG, checkpoint=ckpt,
              progress=interrupt_at(12))
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 10

    model = fresh_model()               # a new process: fresh model, same checkpoint dir
    seen = []
    log = train(model, dict(model.named_parameters()), sampler(), TOK, CFG, checkpoint=ckpt,
                progress=lambda s, loss: seen.append(s))
    assert log["resumed_from"] == 10
    assert seen == list(range(11, 21))
    got = state(model)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert log["curve"] == log_straight["curve"]
    assert [s for s, _ in log["curve"]] == [10, 20]


def test_resume_mid_curve_point_and_stale_meta(straight, tmp_path):
    """Checkpoints every 5 steps, a curve point every 10: the losses since the last point
    survive the resume. And a stop between the two renames of a save (new tensors, old
    meta.json) still resumes from the tensors' own step."""
    want, log_straight = straight
    cfg = LoopConfig(**{**CFG.__dict__, "checkpoint_every": 5})
    ckpt = tmp_path / "ckpt"
    model = fresh_model()
    with pytest.raises(Interrupt):
        train(model, dict(model.named_parameters()), sampler(), TOK, cfg, checkpoint=ckpt,
              progress=interrupt_at(17))          # saved at 5, 10, 15
    (ckpt / "meta.json").write_text(json.dumps({"step": 10, "curve": [], "running": []}))
    model = fresh_model()
    log = train(model, dict(model.named_parameters()), sampler(), TOK, cfg, checkpoint=ckpt)
    assert log["resumed_from"] == 15
    assert log["curve"] == log_straight["curve"]
    got = state(model)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("damage", ["truncated", "garbage meta", "nan tensors", "past the end"])
def test_an_unusable_checkpoint_is_discarded_and_the_run_restarts(straight, tmp_path, damage):
    """A checkpoint that cannot be a state of this run never blocks its recipe: it is
    deleted, the run starts from step 0 and (deterministic) makes the same tensors; the
    log says what happened."""
    from safetensors.torch import load_file, save_file

    want, log_straight = straight
    ckpt = tmp_path / "ckpt"
    model = fresh_model()
    with pytest.raises(Interrupt):
        train(model, dict(model.named_parameters()), sampler(), TOK, CFG, checkpoint=ckpt,
              progress=interrupt_at(12))
    state_file = ckpt / "state.safetensors"
    if damage == "truncated":
        state_file.write_bytes(state_file.read_bytes()[:1000])
    elif damage == "garbage meta":
        tensors = load_file(state_file)
        save_file(tensors, state_file, metadata={"meta": "{not json"})
    elif damage == "nan tensors":
        tensors = {k: v * float("nan") if v.is_floating_point() else v for k, v in load_file(state_file).items()}
        save_file(tensors, state_file, metadata={"meta": json.dumps({"step": 10, "curve": [], "running": []})})
    else:
        tensors = load_file(state_file)
        save_file(tensors, state_file, metadata={"meta": json.dumps({"step": 99, "curve": [], "running": []})})
    model = fresh_model()
    log = train(model, dict(model.named_parameters()), sampler(), TOK, CFG, checkpoint=ckpt)
    assert log["resumed_from"] == 0 and str(ckpt) in log["restarted"]
    assert log["curve"] == log_straight["curve"]
    got = state(model)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_training_changes_weights_and_lowers_loss(straight):
    want, log = straight
    init = state(fresh_model())
    assert any(not torch.equal(init[k], want[k]) for k in want)
    (_, first), (_, last) = log["curve"]
    assert last < first
    assert log["tokens_per_second"] > 0 and log["resumed_from"] == 0
    assert log["config"]["steps"] == 20


def test_checkpoint_is_safetensors_and_json(tmp_path):
    ckpt = tmp_path / "ckpt"
    model = fresh_model()
    params = {k: p for k, p in model.named_parameters() if "layers.0." in k}   # a subset
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    with pytest.raises(Interrupt):
        train(model, params, sampler(), TOK, CFG, checkpoint=ckpt, progress=interrupt_at(11))
    assert sorted(p.name for p in ckpt.iterdir()) == ["meta.json", "state.safetensors"]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == 10 and [s for s, _ in meta["curve"]] == [10]
    raw = (ckpt / "state.safetensors").read_bytes()
    assert raw[:1] != b"\x80"                        # not a pickle (protocol 2+ opcode)
    header_len = int.from_bytes(raw[:8], "little")   # safetensors: u64 length + JSON header
    header = json.loads(raw[8: 8 + header_len])
    assert "param/model.layers.0.self_attn.q_proj.weight" in header
    tensors = load_file(ckpt / "state.safetensors")
    kinds = ("param", "exp_avg", "exp_avg_sq", "step")
    expected = {f"{kind}/{k}" for k in params for kind in kinds}
    assert set(tensors) == expected
    assert all(tensors[f"step/{k}"].item() == 10 for k in params)
    # params not being trained are neither saved nor changed
    init = fresh_model().state_dict()
    for k, v in model.state_dict().items():
        if k not in params:
            assert torch.equal(v, init[k]), k


# ------------------------------------------------------------------------ early stopping

@pytest.mark.parametrize("scores, patience, expected", [
    ([0.5, 0.6], 2, False),              # fewer scores than patience + 1
    ([0.5, 0.6, 0.6, 0.55], 2, True),    # best 0.6 at the second; two since fail to beat it
    ([0.5, 0.6, 0.55, 0.61], 2, False),  # the last beats the best before the window
    ([0.7, 0.7], 1, True),               # equal is not better
    ([0.7, 0.1, 0.2], 0, False),         # patience 0: never stop
])
def test_stalled_by_hand(scores, patience, expected):
    from skillbank.acquire.loop import stalled

    assert stalled(list(enumerate(scores)), patience) is expected


def test_early_stop_keeps_the_best_weights_and_resumes_to_the_same_end(tmp_path):
    """Scores by step (every 4 steps): 0.2, 0.5, 0.4, 0.45 → stalled at step 16 with
    patience 2; the result is the weights after step 8, the best score's."""
    scripted = {4: 0.2, 8: 0.5, 12: 0.4, 16: 0.45}
    cfg = LoopConfig(steps=20, lr=3e-3, warmup=5, checkpoint_every=10)
    snapshots = {}

    def run(model, checkpoint=None, progress=None):
        step_now = {"s": 0}

        def on_step(step, _opt):
            step_now["s"] = step
            snapshots.setdefault(step, state(model))

        return train(model, dict(model.named_parameters()), sampler(), TOK, cfg,
                     checkpoint=checkpoint, progress=progress, on_step=on_step,
                     validate=lambda: scripted[step_now["s"]], val_every=4, patience=2)

    model = fresh_model()
    log = run(model)
    assert log["stopped_at"] == 16 and log["best_step"] == 8
    assert log["validation"] == [(4, 0.2), (8, 0.5), (12, 0.4), (16, 0.45)]
    best = state(model)
    for k, v in snapshots[8].items():
        assert torch.equal(best[k], v)
    # interrupted at step 13 (after the checkpoint at 10), resumed: the same end
    snapshots.clear()
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        run(fresh_model(), checkpoint=ckpt, progress=interrupt_at(13))
    resumed_model = fresh_model()
    resumed = run(resumed_model, checkpoint=ckpt)
    assert resumed["resumed_from"] == 10 and resumed["stopped_at"] == 16
    assert resumed["validation"] == log["validation"]
    for k, v in state(resumed_model).items():
        assert torch.equal(v, best[k])
