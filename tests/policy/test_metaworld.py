"""The real Meta-World simulator (one short test each): demonstrations, held-out goals, the
demonstration cache, a simulator error inside one episode, and the CLI's one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("metaworld")

from skillbank.policy import env as mw  # noqa: E402
from skillbank.policy.evaluate import success_rate  # noqa: E402


def test_demonstrations_are_the_experts_on_demo_goals_and_repeat_exactly(tmp_path):
    a = mw.demonstrations("reach-v3", 2, seed=0, horizon=150)
    b = mw.demonstrations("reach-v3", 2, seed=0, horizon=150, cache=tmp_path)
    assert a.episodes == 2 and a.obs.shape[1] == 39 and a.act.shape[1] == 4
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.act, b.act)
    (cached,) = tmp_path.glob("*.npz")
    c = mw.demonstrations("reach-v3", 2, seed=0, horizon=150, cache=tmp_path)  # from the file
    assert np.array_equal(c.obs, a.obs)
    cached.write_bytes(b"damaged")  # a damaged cache entry is made again, not trusted
    assert np.array_equal(mw.demonstrations("reach-v3", 2, 0, horizon=150, cache=tmp_path).act, a.act)
    # the label is the expert's clean action at each visited state
    expert = mw.expert("reach-v3")
    assert np.allclose(a.act[5], expert.get_action(a.obs[5].astype(np.float64)), atol=1e-6)
    # demonstration and evaluation goals are different episodes
    starts = {tuple(np.round(mw.make_env("reach-v3", 0, g)[1], 6)) for g in mw.DEMO_GOALS}
    held = {tuple(np.round(mw.make_env("reach-v3", 0, g)[1], 6)) for g in mw.EVAL_GOALS}
    assert not starts & held


def test_a_simulator_error_fails_that_episode_and_the_rest_complete(monkeypatch):
    real = mw.make_env

    def flaky(task, seed, goal, speed=1.0):
        if goal == 26:
            raise RuntimeError("mj_step: simulation unstable")
        return real(task, seed, goal, speed)
    monkeypatch.setattr(mw, "make_env", flaky)
    pol = mw.expert("reach-v3")

    class Expert(torch.nn.Module):
        def forward(self, obs):
            return torch.as_tensor(pol.get_action(obs[0].double().numpy()), dtype=torch.float32)[None]
    res = success_rate(Expert(), "reach-v3", episodes=3, horizon=150)
    assert res["episodes"] == 3 and res["errors"] == 1 and res["successes"] == 2
    assert res["first_error"] == "RuntimeError: mj_step: simulation unstable"


def test_policy_commands_refuse_bad_input_in_one_line(home, tiny_llama_dir, tmp_path):
    from faults.faults_helpers import cli, one_line_error
    from skillbank.policynet import new_policy

    new_policy(8, 1, np.zeros(39), np.ones(39), 0).save_pretrained(tmp_path / "pol")
    for args in (["base", "add", "pol", "--from", tmp_path / "pol"],
                 ["base", "add", "lm", "--from", tiny_llama_dir]):
        code, out, err = cli("--home", home, *args)
        assert code == 0, err
    cases = [
        (["train", "s", "--base", "pol", "--task", "reach"], "unknown Meta-World task 'reach'"),
        (["train", "s", "--base", "lm", "--task", "reach-v3", "--world", "metaworld"],
         "not a policy"),
        (["train", "s", "--base", "pol", "--task", "rot", "--world", "strings"], "is a policy"),
        (["eval", "--base", "pol", "--tasks", "reach-v3", "--episodes", "30"], "held-out goal"),
        (["eval", "--base", "pol", "--tasks", "nope-v3"], "unknown Meta-World task"),
        (["eval", "--base", "lm", "--world", "metaworld", "--tasks", "reach-v3"], "evaluates policies"),
        (["base", "train", "b", "--world", "metaworld", "--tasks", "reach-v3,fly-v3"], "fly-v3"),
        (["demo", "--profile", "policy", "--tasks", "door-open-v3,fly-v3", "--out", tmp_path / "d"],
         "fly-v3"),
        (["demo", "--profile", "policy", "--tasks", "window-close-v3", "--out", tmp_path / "d"],
         "must differ"),
        (["demo", "--profile", "robots", "--out", tmp_path / "d"], "choose from embedded"),
    ]
    for args, msg in cases:
        code, out, err = cli("--home", home, *args)
        assert one_line_error(code, err) and msg in err, (args, err)
    code, out, err = cli("--home", home, "policy", "tasks", "--json")
    assert code == 0 and '"reach-v3"' in out


def test_frames_are_the_evaluated_episode_rendered(tmp_path):
    from skillbank.policy.frames import NoRenderer, episode_frames, save_strip

    pol = mw.expert("reach-v3")
    act = lambda obs: pol.get_action(obs)  # noqa: E731
    try:
        shots, ok = episode_frames(act, "reach-v3", 0, mw.EVAL_GOALS[0], frames=3, size=32,
                                   horizon=150)
    except NoRenderer as e:
        assert "libosmesa6" in str(e) and "\n" not in str(e)
        pytest.skip("no offscreen renderer here")
    ep = mw.run_episode(act, "reach-v3", 0, mw.EVAL_GOALS[0], 150)
    assert ok == ep.success and shots.shape == (3, 32, 32, 3) and shots.dtype == np.uint8
    assert shots.std() > 0 and not np.array_equal(shots[0], shots[-1])  # a scene, and it moves
    save_strip(shots, tmp_path / "s.png")
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "s.png").shape[:2] == (32, 96)


def test_the_policy_demo_runs_end_to_end_on_tiny_sizes(home, tmp_path):
    import json

    from skillbank.cli.core import Ui
    from skillbank.demo_policy import quick_config, run_policy_demo
    from skillbank.library import Library

    lib = Library.open(home, create=True)
    s = run_policy_demo(lib, tmp_path / "out", quick_config(workers=None, frames=False), Ui(True))
    cols = ["door-open-v3", "drawer-open-v3", "window-close-v3"]
    assert list(s["skills"]) == ["policy-door-open", "policy-drawer-open"]
    assert all(set(row) == set(cols) for row in s["matrix"].values()) and len(s["matrix"]) == 3
    methods = s["composition"]["methods"]
    assert set(methods) == {"base alone", "new LoRA", "α(s)", "α(s) + new LoRA", "linear",
                            "task_arithmetic", "ties"}
    for v in methods.values():  # each composed subject is a stored skill (or the base)
        assert v["ref"].startswith("base:") or lib.get(v["ref"]).base == lib.base(
            s["base"]["name"]).fingerprint
    assert lib.get(methods["ties"]["ref"]).lineage[-1] == methods["new LoRA"]["ref"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == s
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Success curves" in html and "frames not asked for" in html
    again = run_policy_demo(lib, tmp_path / "out2", quick_config(workers=None, frames=False),
                            Ui(True))  # everything found by recipe: the same skills and figures
    assert again["matrix"] == s["matrix"] and again["composition"] == s["composition"]


def test_continual_strategies_on_tiny_sizes_and_their_metrics_from_R(tmp_path):
    from skillbank.evaluate import continual as metrics
    from skillbank.library import Library
    from skillbank.policy.continual import PolicyContinualRecipe, run_policy_continual
    from skillbank.policynet import new_policy

    new_policy(8, 1, np.zeros(39), np.ones(39), 0).save_pretrained(tmp_path / "pol")
    base = Library.open(tmp_path / "home").add_base("pol", tmp_path / "pol")
    r = PolicyContinualRecipe(("reach-v3", "push-v3"), demos=1, rank=2, steps=4, curve_points=1,
                              episodes=1, horizon=150)
    out = run_policy_continual(base, r)
    assert set(out["strategies"]) == {"seq", "replay", "ewc", "expand"}
    for name, s in out["strategies"].items():
        R, curves = s["R"], s["curves"]
        assert len(R) == 2 and all(len(row) == 2 for row in R)
        assert [len(c) for c in curves] == [2, 2]  # step 0 and the checkpoint
        assert all(row[k] == c[-1] for k, (row, c) in enumerate(zip(R, curves)))
        assert s["acc"] == metrics.acc(R) and s["forgetting"] == metrics.forgetting_chaudhry(R)
        assert s["fwt"] == metrics.libero(curves, R)["fwt"], name
    e = out["strategies"]["expand"]["R"]
    assert e[0][1] == out["b"][1] and e[1][0] == e[0][0]  # the base on a task not yet learnt
    assert out["strategies"]["expand"]["forgetting"] == 0


def test_the_ewc_fisher_is_the_mean_squared_gradient():
    from skillbank.policy.continual import fisher

    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0]]))

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, obs):
            return self.lin(obs)
    m = M()
    obs = np.tile(np.array([[1.0, 2.0]], np.float32), (4, 1))  # every minibatch the same
    act = np.full((4, 1), 0.25, np.float32)
    F = fisher(m, {"w": lin.weight}, obs, act, 2, 0)
    # loss = (w·x − y)² ; w·x = 0.5 − 2 = −1.5, residual −1.75, grad = 2·(−1.75)·x
    g = np.array([2 * -1.75 * 1.0, 2 * -1.75 * 2.0])
    assert np.allclose(F["w"].numpy(), g[None] ** 2)


def test_route_compose_transfer_and_continual_take_policy_skills(home, tmp_path):
    import json

    from faults.faults_helpers import cli, one_line_error
    from skillbank.policynet import new_policy

    new_policy(8, 1, np.zeros(39), np.ones(39), 0).save_pretrained(tmp_path / "pol")
    assert cli("--home", home, "base", "add", "pol", "--from", tmp_path / "pol")[0] == 0
    for name, task in (("a", "reach-v3"), ("b", "push-v3")):
        code, _, err = cli("--home", home, "train", name, "--base", "pol", "--task", task,
                           "--demos", "1", "--steps", "3", "--rank", "2")
        assert code == 0, err
    code, out, err = cli("--home", home, "route", "r", "--from", "a,b", "--tasks", "reach-v3",
                         "--demos", "1", "--steps", "3", "--new-rank", "2", "--episodes", "1",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["router"] == "r@1" and r["new_lora"] == "r-new@1"
    assert set(r["success"]) == {"r@1", "a@1", "b@1"}
    code, out, err = cli("--home", home, "continual", "--world", "metaworld", "--base", "pol",
                         "--tasks", "reach-v3,push-v3", "--strategy", "seq,expand", "--steps",
                         "3", "--episodes", "1", "--demos", "1", "--json")
    assert code == 0, err
    c = json.loads(out)
    assert set(c["strategies"]) == {"seq", "expand"}
    assert c["strategies"]["expand"]["forgetting"] == 0
    code, out, err = cli("--home", home, "compose", "m", "--from", "a,b", "--method", "ties",
                         "--eval", "--n", "1", "--json")
    assert code == 0, err
    comp = json.loads(out)["metrics"]["composition"]
    assert set(comp["alone"]) == {"reach-v3", "push-v3"} and comp["episodes"] == 1
    for t, v in comp["normalised"].items():
        alone = comp["alone"][t]
        assert v == (round(comp["composed"][t] / alone, 4) if alone else None)
    code, out, err = cli("--home", home, "transfer", "reach-v3", "--candidates", "a,b", "--demos",
                         "1", "--verify", "--steps", "3", "--episodes", "1", "--json")
    assert code == 0, err
    t = json.loads(out)
    assert set(t["scores"]) == {"base", "a@1", "b@1"} and set(t["verified"]) == {
        "a@1", "b@1", "scratch"}
    assert t["ranking"] == sorted(["a@1", "b@1"], key=lambda r: -t["scores"][r]["logme"])
    assert set(t["agreement"]) == {"logme", "bc"}
    for args, msg in ((["route", "r2", "--from", "a,b"], "pass --tasks"),
                      (["transfer", "reach-v3", "--candidates", "a,b", "--estimator", "leep"],
                       "does not apply"),
                      (["compose", "m2", "--from", "a,b", "--method", "regmean"], "does not apply"),
                      (["continual", "--world", "metaworld", "--tasks", "reach-v3,push-v3"],
                       "needs --base"),
                      (["continual", "--world", "metaworld", "--base", "pol", "--tasks",
                        "reach-v3,push-v3", "--strategy", "olora"], "unknown strategy")):
        code, _, err = cli("--home", home, *args)
        assert one_line_error(code, err) and msg in err, (args, err)


def test_policy_features_are_what_the_head_reads(tmp_path):
    from skillbank.library import Library
    from skillbank.policy.evaluate import load_policy
    from skillbank.policy.transfer import policy_features
    from skillbank.policynet import new_policy

    new_policy(8, 2, np.zeros(39), np.ones(39), 0).save_pretrained(tmp_path / "pol")
    base = Library.open(tmp_path / "home").add_base("pol", tmp_path / "pol")
    model = load_policy(base)
    obs = np.random.default_rng(0).normal(size=(5, 39)).astype(np.float32)
    feats, act = policy_features(model, obs)
    with torch.no_grad():
        x = model.embed(model.features(torch.as_tensor(obs)))
        for block in model.blocks:
            x = block(x)
        by_hand = model.norm(x)
        head = model.head(by_hand).double().numpy()
    assert feats.shape == (5, 8) and np.allclose(feats, by_hand.double().numpy(), atol=1e-6)
    assert np.allclose(act, head, atol=1e-6)


def test_a_policy_graft_is_scored_by_actions_and_judged_by_success(tmp_path):
    from skillbank.library import Library
    from skillbank.localize import graft
    from skillbank.localize.ops import GraftRecipe, localize
    from skillbank.localize.policy import PolicyScorer
    from skillbank.policy.bc import PolicyLoraRecipe, train_policy_lora
    from skillbank.policynet import new_policy

    new_policy(8, 1, np.zeros(39), np.ones(39), 0).save_pretrained(tmp_path / "pol")
    base = Library.open(tmp_path / "home").add_base("pol", tmp_path / "pol")
    skill = train_policy_lora("s", base, PolicyLoraRecipe("reach-v3", demos=1, rank=2, alpha=4,
                                                          steps=3, horizon=150))
    g = localize(base, skill, GraftRecipe(sparsity=0.05, steps=2, eval_every=1), n_eval=2)
    m = g.metrics["localization"]
    assert g.kind == "sparse" and g.lineage == [skill.ref] and m["world"] == "metaworld"
    sub = m["subjects"]
    for label in ("learned", "top_delta", "random"):
        want = graft.relative_gain(sub[label]["success"], sub["base"]["success"],
                                   sub["skill"]["success"])
        assert sub[label]["relative_gain"]["exact_match"] == want
        assert sub[label]["size"] == m["size"]
    assert 0 < m["size"] <= m["k_init"] == round(0.05 * m["n_eligible"])  # the budget
    # the selection score by hand: two states, one action within 0.1 of the expert's
    lin = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]]))

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, obs):
            return self.lin(obs)
    sc = PolicyScorer(M(), np.array([[0.5], [0.2]], np.float32),
                      np.array([[0.55, 0.0], [0.5, 0.3]], np.float32))
    r = sc({})
    # errors: (−0.05, 0), (−0.3, −0.3): mse = (0.0025 + 0.09 + 0.09) / 4
    assert r["exact_match"] == 0.5 and np.isclose(r["loss"], 0.1825 / 4)
    assert np.isclose(r["mean_logprob"], -0.1825 / 4)
