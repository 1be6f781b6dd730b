"""Continual acquisition of classifiers (continual/classify.py) on a tiny BERT with the
shipped Debian data: the multi-head loss by hand, the first task of every strategy is the
classifier trained alone, heads stay frozen after their task, expansion forgets nothing —
checked on `repro continual --profile real --quick`, run end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skillbank.acquire.multihead import MultiHead
from skillbank.continual.strategies import STRATEGIES
from skillbank.library import Library
from skillbank.repro import profiles
from tinyskills import run_quick_real


class _Echo(nn.Module):
    """An "encoder" whose hidden states are the input ids as one float feature."""

    config = type("C", (), {"hidden_size": 2})()

    def forward(self, input_ids, attention_mask):
        h = torch.stack([input_ids.float(), torch.ones_like(input_ids, dtype=torch.float)], -1)
        return type("O", (), {"last_hidden_state": h})()


def test_multi_head_loss_by_hand():
    m = MultiHead(_Echo(), ["a", "b"])
    ha, hb = m.add_head("a", 2), m.add_head("b", 3)
    with torch.no_grad():
        ha.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        hb.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    ids = torch.tensor([[2, 4], [3, 0], [1, 1]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    out = m(ids, mask, labels=torch.tensor([0, 2, 1]), task_index=torch.tensor([0, 1, 0]))
    # pooled rows: (3, 1), (3, 1), (1, 1); row 0 and 2 read by head a, row 1 by head b
    lse = torch.logsumexp
    want = ((lse(torch.tensor([3.0, 1.0]), 0) - 3.0)            # row 0, class 0 of a
            + (lse(torch.tensor([0.0, 3.0, 2.0]), 0) - 2.0)     # row 1, class 2 of b
            + (lse(torch.tensor([1.0, 1.0]), 0) - 1.0)) / 3     # row 2, class 1 of a
    assert float(out.loss.detach()) == pytest.approx(float(want), rel=1e-6)


def test_quick_real_continual(tmp_path):
    assert profiles("continual") == ["embedded", "real"]
    home, res = run_quick_real(tmp_path, "continual")
    fig = res["figures"]
    assert fig["tasks"] == ["media", "net", "science"] and set(fig["strategies"]) == set(STRATEGIES)
    assert len(fig["joint_reference"]) == 3
    for m in fig["strategies"].values():
        assert len(m["R"]) == 3 and "intransigence_mean" in m
    assert fig["checks"]["expand_zero_forgetting"]
    assert fig["checks"]["expand_members_bit_identical"]
    assert fig["checks"]["expand_members_accuracy_unchanged"]
    assert len(fig["strategies"]["expand"]["routed_final"]) == 3
    assert (tmp_path / "out" / "continual_seq.png").exists()
    st = fig["strategies"]
    # the same seed, data and budget: every strategy's first task is the classifier trained
    # alone (replay draws its batches through the replay sampler, so it may differ)
    assert len({st[s]["R"][0][0] for s in ("seq", "ewc", "olora", "expand")}) == 1
    for m in st.values():
        assert m["R"][0][1:] == fig["b"][1:]     # no head for later tasks yet: the majority row
    assert st["ewc"]["fisher_sum"][0] > 0
    with Library.open(home) as lib:
        media, net = lib.get("cl-seq-media"), lib.get("cl-seq-net")
        assert set(media.heads()) == {"media"} and set(net.heads()) == {"media", "net"}
        # media's head is frozen while net is learned; the shared LoRA moves
        assert torch.equal(media.tensors["head.media.weight"], net.tensors["head.media.weight"])
        key = "encoder.layer.0.attention.self.query.lora_B.weight"
        assert not torch.equal(media.tensors[key], net.tensors[key])
        assert lib.get("cl-olora-net").config["applied_with"]
