"""Policy skills: the policy base as a library base, PSEC's α(s) mixture checked against
weights added by hand, the new LoRA beside it, behaviour cloning, success-rate figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skillbank.base import apply_skill
from skillbank.library import Library
from skillbank.policy import PolicyError
from skillbank.policy.bc import fit, policy_lora_config
from skillbank.policy.env import Episode
from skillbank.policy.evaluate import success_curve, summarize
from skillbank.policy.routed import StateRouted
from skillbank.policynet import new_policy
from skillbank.routed import Router
from skillbank.skill import Skill


def _policy_base(tmp_path, width=8, blocks=2):
    rng = np.random.default_rng(0)
    model = new_policy(width, blocks, rng.normal(size=39), rng.uniform(0.5, 2, size=39), seed=3)
    model.save_pretrained(tmp_path / "model")
    lib = Library.open(tmp_path / "home")
    return lib, lib.add_base("pol", tmp_path / "model")


def _lora(base, name, seed, rank=2):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in range(base.arch.n_blocks):
        for m in base.arch.targets:
            tensors[f"blocks.{i}.{m}.lora_A.weight"] = torch.randn(rank, 8, generator=g)
            tensors[f"blocks.{i}.{m}.lora_B.weight"] = torch.randn(8, rank, generator=g)
    return Skill(name=name, kind="lora", base=base.fingerprint, tensors=tensors,
                 config=policy_lora_config(base, rank, 2 * rank))


def test_a_policy_network_is_a_base_of_kind_policy(tmp_path):
    lib, base = _policy_base(tmp_path)
    assert base.kind == "policy"
    assert base.arch.blocks == "blocks" and base.arch.targets == ("fc1", "fc2")
    model = base.load_model()
    # the state normalisation is part of the saved model (and so of its fingerprint)
    assert torch.allclose(model.obs_std, torch.tensor(model.config.obs_std, dtype=torch.float32))
    assert torch.isfinite(model(obs=torch.zeros(3, 39))).all()
    # the normalised state, by hand: (s - mu) / sigma, clipped to ±obs_clip (10)
    mu, sd = np.array(model.config.obs_mean), np.array(model.config.obs_std)
    s = mu + sd * np.r_[0.5, -3.0, 25.0, -1e4, np.zeros(35)]
    z = model.features(torch.tensor(s[None], dtype=torch.float32))[0]
    assert torch.allclose(z[:5], torch.tensor([0.5, -3.0, 10.0, -10.0, 0.0]), atol=1e-4)
    model.save_pretrained(tmp_path / "again")
    assert lib.add_base("pol2", tmp_path / "again").fingerprint == base.fingerprint
    with pytest.raises(Exception, match="a policy: it reads states"):
        base.load_tokenizer()


@pytest.mark.parametrize("rank", [2, 5])
def test_state_routing_equals_the_weights_alpha_of_s_adds(tmp_path, rank):
    """W(s) = W0 + Σ α_i(s)·ΔW_i: for one state, the routed policy's action equals the base
    with α_i(s)·ΔW_i added to its weights by ``apply_skill`` — through factor pairs (rank 2
    on 8 × 8 layers: 2·16 < 64) and through dense ΔW (rank 5: 5·16 > 64)."""
    lib, base = _policy_base(tmp_path)
    members = [_lora(base, "a", 1, rank), _lora(base, "b", 2, rank)]
    torch.manual_seed(0)
    router = Router(39, 2, width=6, layers=2)
    with torch.no_grad():
        router.net[-1].weight.normal_()
        router.net[-1].bias.copy_(torch.tensor([0.3, -0.7]))
    routed = StateRouted(base.load_model(), members, router)
    assert (sorted(routed._W) if rank == 5 else sorted(routed._A)) == routed.layers
    for k in range(3):
        s = torch.randn(1, 39) * (k + 1)
        alpha = router(routed.model.features(s))[0]
        by_hand = base.load_model()
        for skill, a in zip(members, alpha.tolist(), strict=True):
            apply_skill(by_hand, skill, base, weight=a)
        with torch.no_grad():
            assert torch.allclose(routed(obs=s), by_hand(obs=s), atol=1e-5)
    # a batch mixes per state: row i is that state's own mixture
    batch = torch.randn(4, 39)
    with torch.no_grad():
        rows = torch.cat([routed(obs=batch[i:i + 1]) for i in range(4)])
        assert torch.allclose(routed(obs=batch), rows, atol=1e-6)


@pytest.mark.parametrize("rank", [2, 5])
def test_the_new_lora_beside_alpha_is_the_skill_it_is_stored_as(tmp_path, rank):
    """On every layer the members change, whichever form routes them (rank 5: dense)."""
    lib, base = _policy_base(tmp_path)
    members = [_lora(base, "a", 1, rank)]
    router = Router(39, 1, width=4, layers=1)  # zero head: α = 0, only the new LoRA acts
    routed = StateRouted(base.load_model(), members, router, new_rank=3, new_alpha=6, seed=0)
    assert len(routed.layers) == 2 * len(base.arch.targets)
    assert {k.rsplit("/", 1)[0].replace("/", ".") for k in routed.new} == set(routed.layers)
    with torch.no_grad():
        for k, p in routed.new.items():
            if k.endswith("/B"):
                p.normal_()
    new = Skill(name="new", kind="lora", base=base.fingerprint, tensors=routed.new_tensors(),
                config=policy_lora_config(base, 3, 6))
    s = torch.randn(5, 39)
    with torch.no_grad():
        assert torch.allclose(routed(obs=s), base.load_model([new])(obs=s), atol=1e-5)
    # only α and the new LoRA train: the base and the members are frozen
    trainable = {n for n, p in routed.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("router.", "new.")) for n in trainable)


def test_behaviour_cloning_fits_and_is_deterministic():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(256, 39)).astype(np.float32)
    act = np.tanh(obs[:, :4] * 0.5).astype(np.float32)  # a map the network can represent
    logs, outs = [], []
    for _ in range(2):
        model = new_policy(16, 1, np.zeros(39), np.ones(39), seed=0)
        logs.append(fit(model, list(model.parameters()), obs, act, 300, 3e-3, 64, seed=0))
        outs.append(model(obs=torch.as_tensor(obs[:8])).detach())
    first, last = logs[0]["curve"][0][1], logs[0]["curve"][-1][1]
    assert last < 0.2 * first
    assert logs[0]["curve"] == logs[1]["curve"] and torch.equal(outs[0], outs[1])


def test_success_rate_and_its_binomial_stderr_by_hand():
    eps = [Episode(True, 40), Episode(False, 200), Episode(True, 60), Episode(True, 70)]
    s = summarize(eps)
    assert s["success"] == 0.75 and s["successes"] == 3 and s["steps"] == 370
    assert s["stderr"] == round(math.sqrt(0.75 * 0.25 / 4), 4) == 0.2165
    assert s["success_steps"] == [40, 60, 70]
    curve = dict(success_curve(s, 200))
    assert curve[0] == 0.0 and curve[40] == 0.25 and curve[65] == 0.5 and curve[70] == 0.75
    assert curve[200] == 0.75 and len(curve) == 41
    s = summarize([Episode(False, 3, "MujocoException: bad"), Episode(True, 9)])
    assert s["errors"] == 1 and s["first_error"].startswith("MujocoException") and s["success"] == 0.5


def test_bad_recipes_are_one_line_policy_errors():
    from skillbank.policy.bc import PolicyLoraRecipe
    from skillbank.policy.env import eval_goals

    for kwargs, msg in (({"task": "reach"}, "unknown Meta-World task 'reach'"),
                        ({"task": "reach-v3", "demos": 0}, "demos must be"),
                        ({"task": "reach-v3", "speed": float("nan")}, "speed"),
                        ({"task": "reach-v3", "horizon": 501}, "horizon"),
                        ({"task": "reach-v3", "lr": 2.0}, "lr must be")):
        with pytest.raises(PolicyError, match=msg):
            PolicyLoraRecipe(**kwargs)
    from skillbank.policy.routed import StateRouterRecipe

    assert StateRouterRecipe("reach-v3", new_rank=0).new_rank == 0   # no new LoRA
    for bad in (-1, True, 4097, 2.0):
        with pytest.raises(PolicyError, match=r"new_rank must be an integer in \[0, 4,096\]"):
            StateRouterRecipe("reach-v3", new_rank=bad)
    with pytest.raises(PolicyError, match="one per held-out goal"):
        eval_goals(26)
    assert set(eval_goals(25)) == set(range(25, 50))


def test_a_missing_extra_names_its_install_command(monkeypatch):
    import builtins

    from skillbank.policy import require

    real = builtins.__import__

    def no_metaworld(name, *a, **kw):
        if name == "metaworld":
            raise ImportError("No module named 'metaworld'", name="metaworld")
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_metaworld)
    with pytest.raises(PolicyError, match=r"metaworld is not installed\): pip install 'skillbank\[policy\]'"):
        require()
