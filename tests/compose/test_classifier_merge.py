"""Merging classification skills on an encoder: each member's head kept by task beside the
merged encoder, scored per task, data-aware statistics of classifiers, and an evaluation
matrix that marks what a skill cannot answer. A tiny BERT built here with MiniLM's real
tokenizer, trained on a few rows of the shipped Debian data (fast)."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.classify import ClassifierRecipe, encode_texts, mean_pool, train_classifier
from skillbank.cli import app
from skillbank.compose.heads import carry_heads
from skillbank.compose.measure import score_by_task
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.compose.stats import member_stats
from skillbank.evaluate.classify import NotApplicable, evaluate_classifier, skill_probs
from skillbank.library import Library
from skillbank.skill import Skill, SkillError
from skillbank.worlds import get_world, world_for
from tinyskills import tiny_encoder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("clfmerge")
    lib = Library.open(root / "home")
    base = lib.add_base("tinybert", tiny_encoder(root / "tinybert"))
    skills = {}
    for task in ("media", "net"):
        recipe = ClassifierRecipe(task=task, world="debian", world_args={"shots": 16}, steps=20,
                                  batch_size=16, lr=1e-2, max_length=32)
        skills[task] = lib.add(train_classifier(f"{task}-clf", base, recipe))
    yield root, lib, base, skills
    lib.close()


def test_a_merge_keeps_each_members_head_by_task(trained):
    _, _, base, skills = trained
    a, b = skills["media"], skills["net"]
    merged = merge_skills("both", [a, b], MergeSpec("linear"))
    heads = merged.heads()
    assert sorted(heads) == ["media", "net"]
    assert heads["media"]["labels"] == ["graphics", "sound", "video"]
    assert torch.equal(heads["media"]["weight"], a.tensors["head.weight"])
    assert torch.equal(heads["net"]["bias"], b.tensors["head.bias"])
    # the encoder part is the sum of the members' ΔW, heads never merged
    for p, dw in merged.delta().items():
        want = a.delta().get(p, 0) + b.delta().get(p, 0)
        assert torch.allclose(dw, want, atol=1e-6)
    assert not any(k.startswith("head.") for k in merged.delta())


def test_merged_probabilities_by_hand(trained):
    """softmax(head_t(mean_pool(encoder with W0 + ΔW_a + ΔW_b))) computed independently."""
    _, _, base, skills = trained
    a, b = skills["media"], skills["net"]
    merged = merge_skills("both", [a, b], MergeSpec("linear"))
    texts = [e.prompt for e in get_world("debian").examples("net", 5, seed=0, split="eval")]
    got = skill_probs(base, merged, texts, "net")
    model = base.load_model()
    state = model.state_dict()
    with torch.no_grad():
        for p in a.delta():
            state[p] += a.delta()[p] + b.delta()[p]
        model.load_state_dict(state)
        enc = encode_texts(base.load_tokenizer(), texts, 32)
        pooled = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
        logits = pooled @ b.tensors["head.weight"].T + b.tensors["head.bias"]
    assert np.allclose(got, torch.softmax(logits.double(), -1).numpy(), atol=1e-5)
    assert got.shape == (5, 4)


def test_not_applicable_and_scores_per_task(trained):
    _, _, base, skills = trained
    world = get_world("debian")
    with pytest.raises(NotApplicable, match="no head for task 'net'"):
        evaluate_classifier(base, skills["media"], world, "net", 10, 0)
    merged = merge_skills("both", list(skills.values()), MergeSpec("linear"))
    scores = score_by_task(base, [merged], "debian", ["media", "net"], 20, 0)
    for t in ("media", "net"):
        assert scores[t] == evaluate_classifier(base, merged, world, t, 20, 0)["accuracy"]


def test_two_heads_for_one_task_and_mixed_members_are_refused(trained):
    _, _, _, skills = trained
    a = skills["media"]
    with pytest.raises(SkillError, match="both answer task 'media'"):
        carry_heads([a, a])
    plain = Skill(name="plain", kind="delta", base=a.base,
                  tensors={"x.weight": torch.zeros(2, 2)}, config={}, recipe={})
    with pytest.raises(SkillError, match="plain has no classification head"):
        carry_heads([a, plain])


def test_classifier_statistics_by_hand(trained):
    _, _, base, skills = trained
    a = skills["media"]
    param = "encoder.layer.0.attention.self.query.weight"
    texts = [e.prompt for e in get_world("debian", shots=16).examples("media", 4, 3, "train")]
    gram = member_stats(base, a, "gram", [param], 4, 3)[param]
    model = base.load_model([a]).eval()
    enc = encode_texts(base.load_tokenizer(), texts, 32)
    with torch.no_grad():   # layer 0's query reads the embeddings' output
        x = model.embeddings(input_ids=enc["input_ids"]).reshape(-1, 32)
    x = x[enc["attention_mask"].reshape(-1).bool()].double()
    assert torch.allclose(gram.double(), x.T @ x, rtol=1e-4, atol=1e-4)
    fisher = member_stats(base, a, "fisher", [param], 4, 3)[param]
    head = a.heads()["media"]
    total = torch.zeros_like(fisher, dtype=torch.float64)
    named = dict(model.named_parameters())
    for text in texts:   # −log p(ŷ | x), ŷ the member's own class, one text at a time
        e = encode_texts(base.load_tokenizer(), [text], 32)
        model.zero_grad()
        named[param].requires_grad_(True)
        pooled = mean_pool(model(**e).last_hidden_state, e["attention_mask"])
        logp = torch.log_softmax(pooled @ head["weight"].T + head["bias"], -1)[0]
        (-logp.max()).backward()
        total += named[param].grad.double() ** 2
    assert torch.allclose(fisher.double(), total / 4, rtol=1e-3, atol=1e-9)


def test_world_for_reads_the_recipes_and_checks_the_data(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"task": "t", "text": "hello there", "label": "a"}) + "\n")
    name, args = world_for([], data=data)
    assert name == "files" and args["path"] == str(data.resolve()) and len(args["sha256"]) == 64
    recipe = {"world": "files", "world_args": args, "task": "t"}
    assert world_for([recipe]) == ("files", args)
    data.write_text(json.dumps({"task": "t", "text": "changed", "label": "a"}) + "\n")
    with pytest.raises(ValueError, match="changed since the recipe"):
        world_for([recipe])
    with pytest.raises(ValueError, match="different worlds"):
        world_for([recipe, {"world": "strings", "task": "rot"}])
    with pytest.raises(ValueError, match="needs --data"):
        world_for([], world="files")
    assert world_for([]) == ("strings", {})
    assert world_for([{"world": "debian", "world_args": {"shots": 16}}], world="debian")[0] == "debian"
    with pytest.raises(ValueError, match="--data is a file for --world files"):
        world_for([], world="strings", data=data)


def test_cli_eval_matrix_marks_not_applicable_and_compose_scores_per_task(trained):
    root, lib, _, _ = trained
    runner = CliRunner()
    home = str(root / "home")
    r = runner.invoke(app, ["--home", home, "eval", "media-clf", "net-clf", "--n", "20", "--json"])
    assert r.exit_code == 0, r.output
    matrix = json.loads(r.stdout)
    assert matrix["media-clf@1"]["net"] is None and matrix["net-clf@1"]["media"] is None
    assert matrix["base:tinybert"]["net"]["accuracy"] > 0   # the majority-class row
    assert 0.0 <= matrix["media-clf@1"]["media"]["accuracy"] <= 1.0
    r = runner.invoke(app, ["--home", home, "eval", "media-clf", "net-clf", "--n", "20"])
    assert "n/a" in r.output
    r = runner.invoke(app, ["--home", home, "compose", "both", "--from", "media-clf,net-clf",
                            "--method", "ties", "--eval", "--n", "20", "--json"])
    assert r.exit_code == 0, r.output
    comp = json.loads(r.stdout)["metrics"]["composition"]
    assert sorted(comp["alone"]) == ["media", "net"]
    assert comp["alone"]["media"] == matrix["media-clf@1"]["media"]["accuracy"]
    r = runner.invoke(app, ["--home", home, "route", "r", "--from", "media-clf,net-clf",
                            "--steps", "3", "--n", "20", "--json"])
    assert r.exit_code == 0, r.output
    routed = json.loads(r.stdout)
    assert routed["router"] == "r@1"
    assert routed["composition"]["alone"] == comp["alone"]
    assert sorted(routed["composition"]["normalised"]) == ["media", "net"]
    r = runner.invoke(app, ["--home", home, "route", "r2", "--from", "media-clf,net-clf",
                            "--distil"])
    assert r.exit_code != 0 and "--distil is for generation skills" in str(r.exception)


@pytest.mark.parametrize("config, tensors, message", [
    ({"heads": []}, {}, "must map tasks to label lists"),
    ({"heads": {"t": ["a"]}}, {}, "two or more distinct string labels"),
    ({"heads": {"t": ["a", "a"]}}, {}, "two or more distinct string labels"),
    ({"heads": {"t": ["a", "b"]}}, {}, "missing or not shaped"),
    ({"heads": {"t": ["a", "b"]}}, {"head.t.weight": torch.zeros(3, 4),
                                     "head.t.bias": torch.zeros(3)}, "missing or not shaped"),
])
def test_crafted_heads_are_refused(config, tensors, message):
    from skillbank.skill import check_tensors

    skill = Skill(name="x", kind="delta", base="0" * 64,
                  tensors={"w.weight": torch.zeros(2, 2), **tensors}, config=config, recipe={})
    with pytest.raises(SkillError, match=message):
        check_tensors(skill)


def test_a_classifier_router_by_hand_and_only_alpha_trains(trained):
    """Routed probabilities = softmax(head_t(mean_pool(W0 + Σ_i α_i(x) ΔW_i))) with α(x) the
    router on the unchanged base's mean-pooled embedding, computed independently per text."""
    from skillbank.compose.route_classify import ClassifierRouterRecipe, train_classifier_router
    from skillbank.evaluate.suites import load_subject

    _, lib, base, skills = trained
    a, b = skills["media"], skills["net"]
    before = {k: v.clone() for k, v in a.tensors.items()}
    recipe = ClassifierRouterRecipe("debian", ("media", "net"), steps=6, batch_size=8,
                                    max_length=32, world_args={"shots": 16})
    router = lib.add(train_classifier_router("clf-router", base, [a, b], recipe))
    assert router.kind == "router" and router.lineage == [a.ref, b.ref]
    assert all(torch.equal(v, a.tensors[k]) for k, v in before.items())  # members frozen
    assert torch.equal(router.heads()["net"]["weight"], b.tensors["head.weight"])
    assert router.metrics["train"]["curve"]
    g = torch.Generator().manual_seed(0)  # a router far from zero, so routing shows
    router.tensors["router.net.2.weight"] = torch.randn(2, 256, generator=g)
    router.tensors["router.net.2.bias"] = torch.tensor([1.5, -0.5])
    texts = [e.prompt for e in get_world("debian").examples("net", 4, seed=0, split="eval")]
    static = skill_probs(base, merge_skills("sum", [a, b], MergeSpec("linear")), texts, "net")
    got = skill_probs(base, router, texts, "net",
                      loaded=(load_subject(lib, base, [router]), base.load_tokenizer()))
    tok, w = base.load_tokenizer(), {k.removeprefix("router."): v
                                     for k, v in router.tensors.items() if k.startswith("router.")}
    for row, text in enumerate(texts):
        model = base.load_model()
        enc = encode_texts(tok, [text], 32)
        with torch.no_grad():
            e = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
            h = torch.relu(e @ w["net.0.weight"].T + w["net.0.bias"])
            alpha = (h @ w["net.2.weight"].T + w["net.2.bias"])[0]
            state = model.state_dict()
            for p in a.delta():
                state[p] += alpha[0] * a.delta()[p] + alpha[1] * b.delta().get(p, 0)
            model.load_state_dict(state)
            pooled = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
            logits = pooled @ b.tensors["head.weight"].T + b.tensors["head.bias"]
        assert np.allclose(got[row], torch.softmax(logits.double(), -1)[0].numpy(), atol=1e-5)
    assert not np.allclose(got, static, atol=1e-4)  # α(x) is not the plain sum
    acc = score_by_task(base, [router], "debian", ["media", "net"], 8, 0, lib=lib)
    assert set(acc) == {"media", "net"} and all(0.0 <= v <= 1.0 for v in acc.values())


def test_routing_full_fine_tunes_weights_biases_and_layernorm_by_hand(trained):
    """A member changing a linear weight and bias and a LayerNorm's scale and shift: the
    routed encoder equals the base with θ0 + Σ_i α_i(x)·Δθ_i for each text."""
    from skillbank.routed import RoutedModel, Router

    _, _, base, _ = trained
    g = torch.Generator().manual_seed(1)
    names = {"encoder.layer.0.intermediate.dense.weight": (64, 32),
             "encoder.layer.0.intermediate.dense.bias": (64,),
             "encoder.layer.1.output.LayerNorm.weight": (32,),
             "encoder.layer.1.output.LayerNorm.bias": (32,)}
    members = [Skill(f"full{i}", "delta", base.fingerprint,
                     {p: 0.3 * torch.randn(shape, generator=g) for p, shape in names.items()
                      if i == 0 or not p.endswith("LayerNorm.bias")})
               for i in range(2)]
    router = Router(32, 2, width=8)
    with torch.no_grad():
        for p in router.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    routed = RoutedModel(base.load_model(), members, router).eval()
    tok = base.load_tokenizer()
    texts = [e.prompt for e in get_world("debian").examples("media", 3, seed=0, split="eval")]
    enc = encode_texts(tok, texts, 32)
    with torch.no_grad():
        got = routed(**enc).last_hidden_state
        for row in range(len(texts)):
            one = {k: v[row:row + 1] for k, v in enc.items()}
            keep = int(one["attention_mask"].sum())
            one = {k: v[:, :keep] for k, v in one.items()}
            model = base.load_model()
            alpha = router(mean_pool(model(**one).last_hidden_state, one["attention_mask"]))[0]
            state = model.state_dict()
            for p in names:
                state[p] += sum(alpha[i] * m.tensors[p] for i, m in enumerate(members)
                                if p in m.tensors)
            model.load_state_dict(state)
            want = model(**one).last_hidden_state[0]
            assert torch.allclose(got[row, :keep], want, atol=1e-4), row
    with pytest.raises(SkillError, match="linear weights only"):
        from skillbank.routed import linear_factors

        linear_factors(base.load_model(), members, "ScaLearn")
