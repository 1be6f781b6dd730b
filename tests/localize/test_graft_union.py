"""graft_union: the union of sparse grafts as a merge, by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from skillbank.compose import merge
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.skill import Skill, SkillError

P, Q = "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"


def sparse(name: str, entries: dict[str, dict[int, float]], shapes=None) -> Skill:
    shapes = shapes or {P: [2, 3], Q: [2, 2]}
    tensors = {}
    for p, kv in entries.items():
        idx = sorted(kv)
        tensors[f"{p}.indices"] = torch.tensor(idx, dtype=torch.int64)
        tensors[f"{p}.values"] = torch.tensor([kv[i] for i in idx])
    return Skill(name=name, kind="sparse", base="f" * 64, tensors=tensors,
                 config={"shapes": {p: shapes[p] for p in entries}})


def test_pure_union_by_hand():
    a, b = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([0.0, 5.0, 3.0, 0.0])
    ma, mb = torch.tensor([1, 1, 0, 0]).bool(), torch.tensor([0, 1, 1, 0]).bool()
    out, n = merge.graft_union([a, b], [ma, mb])            # entry 1 shared: mean of 2 and 5
    assert out.tolist() == [1.0, 3.5, 3.0, 0.0] and n == 1
    out, n = merge.graft_union([a, b], [ma, mb], on_overlap="sum")
    assert out.tolist() == [1.0, 7.0, 3.0, 0.0] and n == 1
    out, _ = merge.graft_union([a, b], [ma, mb], weights=[2.0, 1.0])
    assert out.tolist() == [2.0, 4.5, 3.0, 0.0]               # (2·2 + 5) / 2 on the shared one
    with pytest.raises(ValueError, match="overlap on 1"):
        merge.graft_union([a, b], [ma, mb], on_overlap="refuse")
    # disjoint: exact, and refusing is fine; a value outside its own mask is ignored
    mb2 = torch.tensor([0, 0, 1, 0]).bool()
    out, n = merge.graft_union([a, b], [ma, mb2], on_overlap="refuse")
    assert out.tolist() == [1.0, 2.0, 3.0, 0.0] and n == 0
    with pytest.raises(ValueError, match="on_overlap"):
        merge.graft_union([a], [ma], on_overlap="max")


def test_union_of_sparse_skills_is_exact_where_disjoint():
    g1 = sparse("g1", {P: {0: 1.0, 4: -2.0}})
    g2 = sparse("g2", {P: {1: 3.0}, Q: {3: 0.5}})
    u = merge_skills("u", [g1, g2], MergeSpec(method="graft_union"))
    assert u.kind == "sparse" and u.lineage == ["g1", "g2"]
    d = u.delta()
    assert d[P].tolist() == [[1.0, 3.0, 0.0], [0.0, -2.0, 0.0]]
    assert d[Q].tolist() == [[0.0, 0.0], [0.0, 0.5]]
    assert u.tensors[f"{P}.indices"].tolist() == [0, 1, 4]
    gu = u.metrics["graft_union"]
    assert gu["entries"] == 4 and gu["member_entries"] == [2, 2] and gu["overlapping_entries"] == 0
    assert u.metrics["merge_error"]["max"] == 0.0 and u.recipe["on_overlap"] == "mean"


def test_union_overlap_counted_averaged_or_refused():
    g1 = sparse("g1", {P: {0: 1.0, 2: 4.0}, Q: {0: 1.0}})
    g2 = sparse("g2", {P: {2: 2.0}, Q: {0: 3.0, 1: 1.0}})
    u = merge_skills("u", [g1, g2], MergeSpec(method="graft_union"))
    assert u.delta()[P].reshape(-1).tolist() == [1.0, 0.0, 3.0, 0.0, 0.0, 0.0]
    assert u.delta()[Q].reshape(-1).tolist() == [2.0, 1.0, 0.0, 0.0]
    gu = u.metrics["graft_union"]
    assert gu["overlapping_entries"] == 2 and gu["overlapping_per_param"] == {P: 1, Q: 1}
    assert gu["entries"] == 4
    s = merge_skills("s", [g1, g2], MergeSpec(method="graft_union", on_overlap="sum"))
    assert s.delta()[P].reshape(-1)[2].item() == 6.0
    with pytest.raises(SkillError, match="overlap on 1"):
        merge_skills("r", [g1, g2], MergeSpec(method="graft_union", on_overlap="refuse"))


def test_union_refuses_other_kinds_and_mismatched_shapes():
    g1 = sparse("g1", {P: {0: 1.0}})
    dense = Skill(name="d", kind="delta", base="f" * 64, tensors={P: torch.ones(2, 3)})
    with pytest.raises(SkillError, match="sparse skills only"):
        merge_skills("u", [g1, dense], MergeSpec(method="graft_union"))
    odd = sparse("g2", {P: {0: 1.0}}, shapes={P: [3, 2]})
    with pytest.raises(SkillError, match="shape"):
        merge_skills("u", [g1, odd], MergeSpec(method="graft_union"))
    with pytest.raises(SkillError, match="rank"):
        merge_skills("u", [g1], MergeSpec(method="graft_union", rank=2))
