"""Continual strategies: penalties by hand, the replay buffer's balance, the loop's extra-loss
hook, and whole runs on a tiny base (expand leaves its members bit-identical)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from skillbank.acquire.loop import LoopConfig, train
from skillbank.acquire.lora import train_lora
from skillbank.acquire.regularize import ewc_penalty, fisher_diag, olora_penalty, online_fisher
from skillbank.cli.core import Ui
from skillbank.continual.strategies import (
    ContinualConfig,
    ReplaySampler,
    balanced_buffer,
    run_continual,
)
from skillbank.skill import SkillError
from tinyskills import tiny_strings_library


def test_ewc_penalty_by_hand():
    params = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor([[0.5]])}
    anchor = {"w": torch.tensor([0.0, 1.0]), "v": torch.tensor([[1.5]])}
    fisher = {"w": torch.tensor([0.5, 2.0]), "v": torch.tensor([[4.0]])}
    # 3 · (0.5·1² + 2·1² + 4·(−1)²) = 3 · 6.5
    assert ewc_penalty(params, fisher, anchor, 3.0).item() == pytest.approx(19.5)
    assert ewc_penalty(anchor, fisher, anchor, 3.0).item() == 0.0


def test_online_fisher_decays_the_old_importance():
    new = {"w": torch.tensor([1.0, 2.0])}
    first = online_fisher(None, new, 0.9)
    assert torch.equal(first["w"], new["w"]) and first["w"] is not new["w"]
    assert torch.allclose(
        online_fisher({"w": torch.tensor([10.0, 0.0])}, new, 0.9)["w"], torch.tensor([10.0, 2.0])
    )


class _Linear(torch.nn.Module):
    """loss = w · x (per batch), so ∂loss/∂w = x."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return SimpleNamespace(loss=(self.w * x).sum())


def test_fisher_is_the_mean_of_squared_minibatch_gradients():
    model = _Linear()
    batches = [{"x": torch.tensor([1.0, -2.0])}, {"x": torch.tensor([3.0, 0.0])}]
    f = fisher_diag(model, dict(model.named_parameters()), batches)
    assert torch.allclose(f["w"], torch.tensor([(1 + 9) / 2, (4 + 0) / 2]))
    assert model.w.grad is None


def test_olora_penalty_by_hand():
    old = {"m": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}  # two earlier rank-1 A's, stacked
    new = {"m": torch.tensor([[-1.0, 2.0]]), "other": torch.ones(1, 2)}  # no old A for "other"
    # A_old A_newᵀ = [[-1], [2]] → Σ|·| = 3; λ = 0.5
    assert olora_penalty(old, new, 0.5).item() == pytest.approx(1.5)
    assert olora_penalty(old, {"m": torch.zeros(1, 2)}, 0.5).item() == 0.0


def test_replay_buffer_is_balanced():
    pools = {t: [f"{t}{i}" for i in range(20)] for t in "abc"}
    buf = balanced_buffer(pools, 10)
    assert {t: len(v) for t, v in buf.items()} == {"a": 3, "b": 3, "c": 3}
    assert buf["a"] == ["a0", "a1", "a2"]
    sampler = ReplaySampler([f"x{i}" for i in range(50)], buf, 16, seed=0, fraction=0.5)
    for step in range(20):
        batch = sampler.batch(step)
        assert len(batch) == 16
        counts = {t: sum(e[0] == t for e in batch) for t in "abcx"}
        assert counts["x"] == 8
        assert sorted(counts[t] for t in "abc") == [2, 3, 3]  # 8 over 3 tasks, off by ≤ 1
        assert all(e in buf[e[0]] for e in batch if e[0] != "x")
    assert sampler.batch(5) == sampler.batch(5)
    assert ReplaySampler(["x"] * 4, {}, 8, 0, 0.5).batch(0) == ["x"] * 8  # no past: current only


def test_loop_extra_loss_hook_is_added():
    w = torch.nn.Parameter(torch.tensor(0.0))

    class M(torch.nn.Module):
        def forward(self, attention_mask):
            return SimpleNamespace(loss=0.0 * w)

    sampler = SimpleNamespace(batch=lambda step: [])
    log = train(
        M(),
        {"w": w},
        sampler,
        None,
        LoopConfig(steps=60, lr=0.1, warmup=1),
        make_batch=lambda tok, ex: {"attention_mask": torch.ones(1)},
        extra_loss=lambda: (w - 3.0) ** 2,
        log_every=60,
    )
    assert w.item() == pytest.approx(3.0, abs=0.3)
    assert log["curve"][0][1] > 0  # the logged loss is the optimised sum


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    lib, base, _ = tiny_strings_library(tmp_path_factory.mktemp("continual"))
    return lib, base


def _cfg(strategy, **kw):
    return ContinualConfig(
        tasks=["rot", "shift"],
        strategy=strategy,
        steps=5,
        batch_size=8,
        pool=32,
        n_eval=6,
        router_steps=3,
        fisher_batches=2,
        rank=2,
        alpha=4,
        **kw,
    )


def test_expand_members_are_frozen_and_equal_the_skills_trained_alone(tiny):
    lib, base = tiny
    run = run_continual(lib, base, _cfg("expand"), Ui(True))
    assert run.extra["members_bit_identical"] and run.extra["members_accuracy_unchanged"]
    assert run.metrics["forgetting_chaudhry"] == 0.0
    assert run.R[0][1] == run.b[1]  # no skill for shift yet: the base answers
    members = [lib.get(r) for r in run.skills[:2]]
    router = lib.get(run.skills[2])
    assert router.kind == "router" and router.lineage == run.skills[:2]
    for m, task in zip(members, ["rot", "shift"], strict=True):
        alone = train_lora("alone", base, _cfg("expand").lora_recipe(task))
        assert alone.tensors.keys() == m.tensors.keys()
        assert all(torch.equal(alone.tensors[k], m.tensors[k]) for k in m.tensors)
    assert len(run.extra["routed_final"]) == 2


def test_seq_ewc_olora_store_skills_with_lineage_and_results(tiny):
    lib, base = tiny
    for strategy in ("seq", "ewc", "olora", "replay"):
        run = run_continual(lib, base, _cfg(strategy, curve_points=2), Ui(True))
        assert np.array(run.R).shape == (2, 2)
        first, second = (lib.get(r) for r in run.skills)
        assert first.lineage == [] and second.lineage == [first.ref]
        assert second.recipe["method"] == f"continual-{strategy}"
        assert [x for x, _ in run.curves["shift"]] == [0, 16, 40]  # steps round(2.5)=2 and 5, × 8
        assert run.curves["shift"][0][1] == run.R[0][1]  # the curve starts where task 0 left off
        assert set(run.metrics["libero"]) >= {"fwt", "nbt", "auc"}
        stored = lib.results(f"continual:{strategy}")[-1]
        assert stored["metrics"]["R"] == run.R and stored["task"] == "rot,shift"
    # seq's first task is exactly a LoRA trained alone with the same recipe
    seq_first = lib.get("cl-seq-rot")
    alone = train_lora("alone", base, _cfg("seq").lora_recipe("rot"))
    assert all(torch.equal(alone.tensors[k], seq_first.tensors[k]) for k in alone.tensors)


def test_bad_config_is_refused():
    with pytest.raises(SkillError, match="strategy"):
        ContinualConfig(tasks=["rot", "shift"], strategy="lwf").check()
    with pytest.raises(SkillError, match="two distinct"):
        ContinualConfig(tasks=["rot", "rot"]).check()
