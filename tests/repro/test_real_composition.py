"""`skillbank repro composition --profile real` end to end, quick, on a tiny BERT registered
as the library's `minilm` base (the profile uses that base when there is one), with the
shipped Debian data: every merge and the advisor answer each task with its own head."""

from __future__ import annotations

import pytest
import torch

from skillbank.library import Library
from skillbank.repro import available, profiles
from skillbank.repro.real import composition
from tinyskills import run_quick_real


def test_real_profile_listed_and_holds_rule_by_hand():
    assert "composition" in available() and "real" not in available()
    assert profiles("composition") == ["embedded", "real"] and profiles("lora") == ["embedded"]
    methods = {"regmean": {"mean": 0.9}, "ties 0.2": {"mean": 0.8}, "simple average": {"mean": 0.8}}
    assert composition.holds({"full": {"methods": methods}})
    methods["simple average"]["mean"] = 0.81
    assert not composition.holds({"full": {"methods": methods}})


def test_quick_real_composition(tmp_path):
    home, res = run_quick_real(tmp_path, "composition")
    assert res["profile"] == "real" and res["quick"] is True
    fig = res["figures"]
    assert fig["tasks"] == ["media", "net"]
    for what in ("lora", "full"):
        fam = fig[what]
        extra = {"auto", composition.ROUTER, composition.LORAHUB}
        extra |= {composition.SCALEARN} if what == "lora" else set()
        assert set(fam["methods"]) == set(composition.specs(2, 0)) | extra
        assert len(fam["methods"][composition.ROUTER]["mean_alpha"]["net"]) == 2
        for m in fam["methods"].values():
            assert set(m["normalised"]) == {"media", "net"}
        assert fam["methods"]["auto"]["chosen"]["method"]
        assert (tmp_path / "out" / f"composition_real_{what}.png").exists()
    with Library.open(home) as lib:
        assert lib.get("debian-media").kind == "lora" and lib.get("debian-full-net").kind == "delta"
        # a full fine-tune changes every encoder-block weight and nothing else
        full = lib.get("debian-full-media")
        assert full.delta() and all(k.startswith("encoder.layer.") for k in full.delta())

    # LoRAHub for a task no member answers: read by that task's label-word head, which the
    # composed skill carries; its first point (w = 0) is the base's cross-entropy by hand
    from skillbank.acquire.classify import label_head
    from skillbank.compose.lorahub import lorahub
    from skillbank.worlds import get_world

    with Library.open(home) as lib:
        base = lib.base("minilm")
        members = [lib.get("debian-media"), lib.get("debian-net")]
        hub = lorahub("hub", base, members, "debian", "science", examples=5, steps=3)
        assert set(hub.heads()) == {"media", "net", "science"}
        world = get_world("debian")
        model, tok = base.load_model(), base.load_tokenizer()
        labels = world.labels("science")
        pool = [e.prompt for e in world.examples("science", 256, seed=0, split="train")]
        head = label_head(model, tok, labels, pool, 32)
        assert torch.allclose(hub.tensors["head.science.weight"], head.weight)
        shots = world.examples("science", 5, seed=0, split="train")
        enc = tok([e.prompt for e in shots], padding=True, truncation=True, max_length=32,
                  return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            logits = head((hidden * m).sum(1) / m.sum(1))
        y = torch.tensor([labels.index(e.target) for e in shots])
        ce = float(torch.nn.functional.cross_entropy(logits, y))
        assert hub.metrics["lorahub"]["history"][0] == pytest.approx(ce, rel=1e-5)
