"""KnOTS, RegMean and Fisher merging against numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch

from skillbank.compose import merge
from skillbank.compose.fisher import fisher_merge
from skillbank.compose.knots import aligned, knots
from skillbank.compose.regmean import regmean, shrink


def test_knots_basis_reproduces_every_member_and_linear_knots_is_task_arithmetic():
    g = torch.Generator().manual_seed(0)
    taus = [torch.randn(5, 3, generator=g) @ torch.randn(3, 4, generator=g) for _ in range(3)]
    u, reps = aligned(taus)
    for t, r in zip(taus, reps, strict=True):
        assert torch.allclose((u @ r).float(), t, atol=1e-5)
    assert torch.allclose(knots(taus, inner="linear"), merge.task_arithmetic(taus), atol=1e-5)
    w = [0.5, 2.0, -1.0]
    assert torch.allclose(knots(taus, w, inner="linear"), merge.task_arithmetic(taus, w), atol=1e-5)


def test_knots_ties_by_hand():
    # [ΔW_1 ΔW_2] = [[3, 0, -1, 0], [0, 0, 0, 0]]: rank 1, U = ±e_1, reps [[3, 0]] and [[-1, 0]]
    # (signs together). TIES keeps all (density 1), elects + (3 - 1 > 0), and averages the
    # agreeing member only: merged rep [[3, 0]], ΔW = [[3, 0], [0, 0]] (linear would give 2).
    taus = [torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([[-1.0, 0.0], [0.0, 0.0]])]
    assert torch.allclose(knots(taus, inner="ties", density=1.0), torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
    assert torch.allclose(knots(taus, inner="linear"), torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    zero = [torch.zeros(2, 2), torch.zeros(2, 2)]
    assert torch.equal(knots(zero), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="ties or linear"):
        knots(taus, inner="dare")


def test_regmean_by_hand():
    # G_1 = diag(2, 1), G_2 = I, τ_1 = [1, 1], τ_2 = [4, -1] (one output row):
    # ΔWᵀ = diag(1/3, 1/2) · ([2, 1] + [4, -1]) = [2, 0]
    g1, g2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.eye(2)
    t1, t2 = torch.tensor([[1.0, 1.0]]), torch.tensor([[4.0, -1.0]])
    assert torch.allclose(regmean([t1, t2], [g1, g2], alpha=1.0), torch.tensor([[2.0, 0.0]]))
    # shrinking off-diagonals: α G + (1 - α) diag G
    g = torch.tensor([[4.0, 2.0], [2.0, 3.0]])
    assert torch.allclose(shrink(g, 0.5), torch.tensor([[4.0, 1.0], [1.0, 3.0]]))


def test_regmean_is_the_least_squares_merge():
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(20, 4, generator=g) for _ in range(3)]
    taus = [torch.randn(3, 4, generator=g) for _ in range(3)]
    grams = [x.T @ x for x in xs]
    got = regmean(taus, grams, alpha=1.0)
    a = torch.cat(xs).double()
    b = torch.cat([x @ t.T for x, t in zip(xs, taus, strict=True)]).double()
    want = torch.linalg.lstsq(a, b).solution.T.float()  # argmin Σ ‖X_i Wᵀ − X_i ΔW_iᵀ‖²
    assert torch.allclose(got, want, atol=1e-5)
    # α = 0: each input feature j a Gram-diagonal-weighted mean of the members' column j
    got0 = regmean(taus, grams, alpha=0.0)
    d = torch.stack([torch.diagonal(gr) for gr in grams])  # (members, in)
    want0 = sum(d[i] * taus[i] for i in range(3)) / d.sum(0)
    assert torch.allclose(got0, want0, atol=1e-5)
    # equal Grams: the plain mean; a singular total (a feature nobody saw) still solves
    assert torch.allclose(regmean(taus, [torch.eye(4)] * 3, alpha=1.0), torch.stack(taus).mean(0), atol=1e-6)
    blind = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert torch.isfinite(regmean(taus, [blind] * 3, alpha=1.0)).all()


def test_fisher_merge_by_hand():
    # entry 0: (1·4 + 3·0) / (1 + 3) = 1; entry 1: no Fisher anywhere, so the floor's mean (2 + 6) / 2 = 4
    taus = [torch.tensor([4.0, 2.0]), torch.tensor([0.0, 6.0])]
    fishers = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])]
    assert torch.allclose(fisher_merge(taus, fishers), torch.tensor([1.0, 4.0]), atol=1e-5)
    # λ weights scale each member's Fisher: (2·1·4) / (2·1 + 3) = 1.6 on entry 0
    assert torch.allclose(fisher_merge(taus, fishers, [2.0, 1.0])[0], torch.tensor(1.6), atol=1e-5)


# -- on a real (tiny) model: the statistics and the merges through merge_skills -------------
def _tiny(tmp_path):
    from dataclasses import replace

    from tinyskills import random_lora, tiny_strings_library

    lib, base, tok = tiny_strings_library(tmp_path)
    a, b = (replace(random_lora(lib, base, n, seed, scale=0.3), recipe={"world": "strings", "task": t})
            for n, seed, t in (("a", 0, "rev"), ("b", 1, "sort")))
    return lib, base, tok, a, b


def test_gram_matrices_are_the_layer_inputs_gram(tmp_path):
    from skillbank.acquire.data import training_batch
    from skillbank.compose.stats import gram_matrices
    from skillbank.worlds import get_world

    lib, base, tok, a, _ = _tiny(tmp_path)
    model = base.load_model([a])
    examples = get_world("strings").examples("rev", 3, seed=0)
    param = "model.layers.0.self_attn.q_proj.weight"
    got = gram_matrices(model, [training_batch(tok, examples)], [param])[param]
    batch = training_batch(tok, examples)  # independently: layer 0's q_proj reads norm(embeddings)
    with torch.no_grad():
        hidden = model(**{k: batch[k] for k in ("input_ids", "attention_mask")},
                       output_hidden_states=True).hidden_states[0]
        x = model.model.layers[0].input_layernorm(hidden).reshape(-1, hidden.shape[-1])
    x = x[batch["attention_mask"].reshape(-1).bool()].double()
    assert torch.allclose(got.double(), x.T @ x, rtol=1e-4, atol=1e-4)
    lib.close()


def test_data_aware_merges_through_merge_skills(tmp_path):
    from skillbank.compose.ops import MergeSpec, merge_skills
    from skillbank.skill import SkillError

    lib, base, tok, a, b = _tiny(tmp_path)
    # RegMean of a skill with itself is that skill (equal Grams: the mean)
    same = merge_skills("m", [a, a], MergeSpec("regmean", examples=4), base)
    for p, dw in a.delta().items():
        assert torch.allclose(same.tensors[p], dw, atol=1e-4)
    fisher = merge_skills("f", [a, b], MergeSpec("fisher", examples=4), base)
    assert fisher.kind == "delta" and all(torch.isfinite(t).all() for t in fisher.tensors.values())
    assert fisher.recipe["examples"] == 4 and fisher.lineage == [a.ref, b.ref]
    lin = merge_skills("k", [a, b], MergeSpec("knots", inner="linear"))
    ta = merge_skills("t", [a, b], MergeSpec("task_arithmetic"))
    for p in ta.tensors:
        assert torch.allclose(lin.tensors[p], ta.tensors[p], atol=1e-4)
    with pytest.raises(SkillError, match="needs the base"):
        merge_skills("m", [a, b], MergeSpec("regmean"))
    no_task = a.__class__(**{**a.__dict__, "recipe": {}})
    with pytest.raises(SkillError, match="does not record its world and task"):
        merge_skills("m", [no_task, b], MergeSpec("fisher", examples=2), base)
    with pytest.raises(SkillError, match="alpha must be in"):
        merge_skills("m", [a, b], MergeSpec("regmean", alpha=2.0), base)
    lib.close()


def test_the_advisor_keeps_the_best_candidate_and_the_whole_table(tmp_path, monkeypatch):
    """Scores are stubbed per candidate (the merges themselves are real): the chosen skill is
    the best-scoring merge, ties go to the earlier candidate, every row is kept."""
    import skillbank.compose.advisor as advisor
    from skillbank.compose.ops import MergeSpec

    lib, base, tok, a, b = _tiny(tmp_path)
    score = {"alone": {"rev": 0.8, "sort": 0.5}}
    composed_by_method = {"linear": {"rev": 0.4, "sort": 0.1}, "ties": {"rev": 0.8, "sort": 0.25},
                          "knots": {"rev": 0.8, "sort": 0.25}}

    def fake_exact_match(base_, skills, world, tasks, n, seed, world_args=None):
        s = skills[0]
        if s.name in ("a", "b"):
            return {t: score["alone"][t] for t in tasks}
        return {t: composed_by_method[s.recipe["method_name"]][t] for t in tasks}

    real_merge = advisor.merge_skills

    def tagged_merge(name, members, spec, base_=None, stats=None):
        m = real_merge(name, members, spec, base_, stats=stats)
        m.recipe["method_name"] = spec.method
        return m

    monkeypatch.setattr(advisor, "score_by_task", fake_exact_match)
    monkeypatch.setattr(advisor, "merge_skills", tagged_merge)
    grid = [MergeSpec("linear"), MergeSpec("ties", density=0.5), MergeSpec("knots")]
    best = advisor.advise("auto", base, [a, b], "strings", k=3, grid=grid)
    table = best.metrics["advisor"]
    # linear: (0.4/0.8 + 0.1/0.5) / 2 = 0.35; ties and knots: (1.0 + 0.5) / 2 = 0.75 → ties, the earlier
    assert [round(r["mean"], 6) for r in table["tried"]] == [0.35, 0.75, 0.75]
    assert table["chosen"]["method"] == "ties" and table["chosen"]["settings"] == {"density": 0.5}
    assert best.recipe["method"] == "ties" and best.recipe["density"] == 0.5
    assert len(advisor.candidates(2)) == 8 and len(advisor.candidates(3)) == 9  # 1/2 = 0.5: one row
    lib.close()


def test_rank_for_error_by_hand():
    # singular values 3, 2, 1: errors at k = 1, 2, 3 are √5/√14 = 0.598, 1/√14 = 0.267, 0
    dw = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    assert merge.rank_for_error(dw, 0.6) == 1
    assert merge.rank_for_error(dw, 0.5) == 2
    assert merge.rank_for_error(dw, 0.267) == 3  # 1/√14 = 0.26726 > 0.267: rank 3
    assert merge.rank_for_error(dw, 0.2673) == 2
    assert merge.rank_for_error(dw, 0.0) == 3
    assert merge.rank_for_error(torch.zeros(2, 2), 0.1) == 1


def test_a_rank_budget_re_factors_to_the_smallest_rank_that_meets_it(tmp_path):
    from skillbank.compose.ops import MergeSpec, merge_skills
    from skillbank.skill import SkillError

    lib, base, tok, a, b = _tiny(tmp_path)
    m = merge_skills("m", [a, b], MergeSpec("linear", rank_budget=0.05))
    r = m.metrics["rank_budget"]["rank"]
    assert m.kind == "lora" and m.config["r"] == r and m.metrics["merge_error"]["max"] <= 0.05
    assert r <= 4  # two rank-2 members: the sum has rank ≤ 4, so error 0 at 4
    loose = merge_skills("l", [a, b], MergeSpec("linear", rank_budget=0.9))
    assert loose.config["r"] <= r
    for bad, msg in [(dict(rank_budget=1.0), "in \\[0, 1\\)"), (dict(rank=2, rank_budget=0.1), "not both")]:
        with pytest.raises(SkillError, match=msg):
            merge_skills("x", [a, b], MergeSpec("linear", **bad))
    lib.close()


def test_answer_entropy_by_hand():
    from skillbank.compose.adamerging import answer_entropy

    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: entropy log 4 at every position
    logits[0, 1] = torch.tensor([100.0, 0.0, 0.0, 0.0])  # position 1 predicts one token: 0
    labels = torch.tensor([[-100, 5, 5]])  # answer tokens at positions 1, 2: predicted from 0, 1
    assert torch.allclose(answer_entropy(logits, labels), torch.tensor(torch.log(torch.tensor(4.0)) / 2))


def test_adamerging_moves_lambda_by_adams_first_step_and_stores_sum_lambda_tau(tmp_path):
    from skillbank.compose.adamerging import AdaMergingRecipe, train_adamerging

    lib, base, tok, a, b = _tiny(tmp_path)
    recipe = AdaMergingRecipe(granularity="task", steps=1, lr=0.01, examples=4, batch_size=2)
    m = train_adamerging("ada", base, [a, b], recipe)
    lam = torch.tensor(m.metrics["lambda"][0])
    # Adam's first step moves every parameter with a non-zero gradient by lr (its m̂/√v̂ = ±1)
    assert torch.allclose((lam - 0.3).abs(), torch.full((2,), 0.01), atol=1e-6)
    da, db = a.delta(), b.delta()
    for p, dw in m.tensors.items():
        assert torch.allclose(dw, lam[0] * da[p] + lam[1] * db[p], atol=1e-6)
    assert m.recipe["method"] == "adamerging" and m.lineage == [a.ref, b.ref]
    from skillbank.skill import SkillError

    with pytest.raises(SkillError, match="granularity"):
        train_adamerging("x", base, [a, b], AdaMergingRecipe(granularity="model"))
    lib.close()


def test_statistics_are_kept_with_the_member_and_reused(tmp_path, monkeypatch):
    import skillbank.compose.stats as stats
    from skillbank.compose.ops import MergeSpec, merge_skills

    lib, base, tok, a, b = _tiny(tmp_path)
    from dataclasses import replace

    a, b = lib.add(replace(a, name="a2")), lib.add(replace(b, name="b2"))  # stored, with tasks
    first = merge_skills("m", [a, b], MergeSpec("regmean", examples=3), base, lib=lib)
    kept = lib.attachment(a.ref, stats.stats_key("gram", 3, 0))
    assert kept is not None and kept[1]["task"] == "rev" and set(first.tensors) >= set(kept[0])
    monkeypatch.setattr(stats, "member_stats", lambda *args: pytest.fail("recomputed"))
    again = merge_skills("m", [a, b], MergeSpec("regmean", examples=3), base, lib=lib)
    for p in first.tensors:
        assert torch.equal(first.tensors[p], again.tensors[p])
    lib.close()


def test_attachments_are_verified_kept_by_gc_and_dropped_with_their_version(home):
    from skillbank.library import Library
    from skillbank.skill import Skill

    with Library.open(home) as lib:
        s = lib.add(Skill("s", "delta", "0" * 64, {"w": torch.ones(3)}))
        lib.attach(s.ref, "stats/gram/4/0", {"g": torch.eye(2)}, {"kind": "gram"})
        blob = lib.conn.execute("SELECT blob FROM attachments").fetchone()[0]
        assert lib.gc()["blobs_removed"] == 0 and lib.blob_path(blob).exists()
        tensors, meta = lib.attachment("s", "stats/gram/4/0")
        assert torch.equal(tensors["g"], torch.eye(2)) and meta == {"kind": "gram"}
        assert lib.attachment("s", "stats/fisher/4/0") is None
        lib.blob_path(blob).write_bytes(b"damaged")
        assert lib.verify() == [{"what": "s@1 stats/gram/4/0", "problem": f"blob {blob[:12]} damaged"}]
        lib.attach(s.ref, "stats/gram/4/0", {"g": torch.eye(2)}, {"kind": "gram"})  # heals it
        assert lib.verify() == []
        with pytest.raises(Exception, match="NaN or Inf"):
            lib.attach(s.ref, "bad", {"g": torch.tensor([float("nan")])})
        lib.rm("s")
        assert lib.conn.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0
        assert lib.gc()["blobs_removed"] == 2 and not lib.blob_path(blob).exists()


def test_the_advisor_refuses_more_selection_inputs_than_the_eval_split_holds(tmp_path):
    import json as _json

    from skillbank.compose.advisor import advise
    from skillbank.skill import SkillError
    from skillbank.worlds.base import split_of

    lib, base, tok, a, b = _tiny(tmp_path)
    rows = [{"task": t, "input": f"{t}{i}", "target": "x"} for t in ("rev", "sort") for i in range(200)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(_json.dumps(r) for r in rows))
    held_out = sum(split_of(r["input"]) == "eval" for r in rows if r["task"] == "rev")
    from dataclasses import replace

    fa = replace(a, recipe={"world": "files", "task": "rev", "world_args": {"path": str(data)}})
    fb = replace(b, recipe={"world": "files", "task": "sort", "world_args": {"path": str(data)}})
    with pytest.raises(SkillError, match=f"task rev has {held_out} held-out inputs, fewer than the 500"):
        advise("auto", base, [fa, fb], "files", k=500, world_args={"path": str(data)})
    lib.close()


def test_the_radix_select_finds_exactly_the_kth_largest():
    g = torch.Generator().manual_seed(3)
    cases = [torch.randn(10_000, generator=g).abs(), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 2.0]),
             torch.rand(5_000, generator=g) * 1e-30, torch.full((100,), 3.5), torch.zeros(7),
             (torch.randn(3_000, generator=g) * 1e20).abs()]
    for v in cases:
        for k in (1, 2, v.numel() // 3, v.numel() - 1, v.numel()):
            want = torch.kthvalue(v, v.numel() - k + 1).values
            assert merge.kth_largest(v, k).item() == want.item(), (v[:3], k)


def _ties_by_tensors(taus, w, density, sign_method, convention):
    """TIES as plain tensor operations (trim by a full sort, then the stacked vote and
    disjoint mean), the reference the compiled loop must match bit for bit."""
    trimmed = []
    for t in taus:
        flat = t.abs().reshape(-1)
        k = max(1, round(density * flat.numel()))
        order = torch.sort(flat, descending=True, stable=True).indices  # ties: lowest index first
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[order[:k]] = True
        trimmed.append(t * keep.view_as(t))
    stack = torch.stack(trimmed)
    wb = torch.tensor(w).view(-1, *([1] * t.dim()))
    weighted = stack * wb
    voter = stack if convention == "peft" else weighted
    s = voter.sum(0) if sign_method == "total" else voter.sign().sum(0)
    gamma = torch.where(s >= 0, 1.0, -1.0)
    mask = (voter.sign() == gamma).float()
    if convention == "peft":
        return (weighted * mask).sum(0) / mask.sum(0).clamp(min=1.0)
    divisor = (wb * mask).sum(0)
    return (weighted * mask).sum(0) / torch.where(divisor == 0, torch.ones_like(divisor), divisor)


def test_the_compiled_ties_equals_ties_written_as_tensor_operations():
    g = torch.Generator().manual_seed(4)
    taus = [torch.randn(64, 48, generator=g) for _ in range(5)]
    taus[1][:8] = 0.0  # zeros never vote-agree
    taus[2][:, :6] = 0.25  # a tie at the threshold, broken towards the lowest indices
    taus[3] = torch.round(taus[3] * 2) / 2  # many ties
    for w in ([1.0] * 5, [1.0, 0.5, 2.0, -1.0, 0.0]):
        for density in (0.05, 0.3, 1.0):
            for sign_method in ("total", "frequency"):
                for convention in ("peft", "mergekit"):
                    got = merge.ties(taus, w, density, sign_method, convention)
                    want = _ties_by_tensors(taus, w, density, sign_method, convention)
                    assert torch.equal(got, want), (w, density, sign_method, convention)
    for t in taus:
        assert merge.topk_mask(t, 0.3).sum() == round(0.3 * t.numel())


def test_one_parameter_at_a_time_equals_the_whole_delta(tmp_path):
    from skillbank.skill import Skill

    lib, base, tok, a, b = _tiny(tmp_path)
    param = "model.layers.0.self_attn.q_proj.weight"
    sparse = Skill("g", "sparse", base.fingerprint, {f"{param}.indices": torch.tensor([0, 5, 1023]),
                                                     f"{param}.values": torch.tensor([1.0, -2.0, 3.0])},
                   config={"shapes": {param: [32, 32]}})
    dense = Skill("d", "delta", base.fingerprint, {param: torch.ones(32, 32), "head.w": torch.ones(2)})
    for s in (a, sparse, dense):
        whole = s.delta()
        assert s.delta_params() == {p: tuple(t.shape) for p, t in whole.items()}
        for p, t in whole.items():
            assert torch.equal(s.delta_of(p), t)
    lib.close()


def test_interference_by_hand():
    from skillbank.compose.ops import interference
    from skillbank.skill import Skill

    fp = "0" * 64
    a = Skill("a", "delta", fp, {"w": torch.tensor([1.0, 1.0, 0.0, 2.0])})
    b = Skill("b", "delta", fp, {"w": torch.tensor([1.0, -1.0, 5.0, 0.0])})
    c = Skill("c", "delta", fp, {"w": torch.tensor([-2.0, -2.0, 0.0, -4.0])})
    rows = {tuple(r["pair"]): r for r in interference([a, b, c])}
    # a, b share entries 0 and 1 and disagree on 1: 1/2; cosine (1 - 1) / (√6 √27) = 0
    assert rows[("a", "b")]["sign_disagreement"] == 0.5 and rows[("a", "b")]["shared_entries"] == 2
    assert abs(rows[("a", "b")]["cosine"]) < 1e-12
    # c = -2a: every shared entry disagrees, cosine -1
    assert rows[("a", "c")]["sign_disagreement"] == 1.0 and abs(rows[("a", "c")]["cosine"] + 1) < 1e-9


def test_compose_eval_scores_members_of_a_files_world_on_their_data_file(tmp_path):
    """Members trained on a user's data file carry it in their recipes; `compose --eval`
    (and the advisor) build that world with it instead of failing for a missing path."""
    import json as _json
    from dataclasses import replace

    from typer.testing import CliRunner

    from skillbank.cli import app
    from skillbank.worlds import pinned_args

    lib, base, tok, a, b = _tiny(tmp_path)
    rows = [{"task": t, "input": w, "target": w[::-1] if t == "rev" else "".join(sorted(w))}
            for t in ("rev", "sort") for w in ("abc", "bca", "cab", "acb", "bac", "cba", "ab", "ba",
                                                "abcab", "cbacb", "aabbc", "ccbba") * 3]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(_json.dumps(r) for r in rows))
    args = pinned_args("files", {"path": str(data)})
    fa = lib.add(replace(a, name="fa", recipe={"world": "files", "task": "rev", "world_args": args}))
    fb = lib.add(replace(b, name="fb", recipe={"world": "files", "task": "sort", "world_args": args}))
    lib.close()
    res = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "compose", "m", "--from",
                                   f"{fa.ref},{fb.ref}", "--eval", "--n", "4", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    comp = _json.loads(res.stdout)["metrics"]["composition"]
    assert set(comp["alone"]) == {"rev", "sort"}
