"""The embedded base: trained once per recipe, then re-used from the library."""

from __future__ import annotations

import dataclasses

import pytest

from skillbank.acquire import pretrain
from skillbank.acquire.pretrain import SIZES, BaseRecipe, ensure_base, find_base, tiny_config
from skillbank.library import Library
from skillbank.worlds.strings import StringsWorld

RECIPE = BaseRecipe(size="tiny", steps=6, batch_size=8, pool=64, tasks=["copy", "rev"])


def test_ensure_base_trains_once_then_reuses(home, monkeypatch):
    calls = []
    real = pretrain.train_base_dir

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train_base_dir", counting)
    with Library.open(home) as lib:
        base, log = ensure_base(lib, "strings-tiny", RECIPE)
        assert len(calls) == 1
        assert log is not None and [s for s, _ in log["curve"]] == [6]
        assert base.name == "strings-tiny" and base.kind == "causal"
        assert base.meta["recipe"] == RECIPE.as_meta()
        assert base.meta["train"]["curve"] == [list(p) for p in log["curve"]]
        tok = base.load_tokenizer()
        charset = StringsWorld().charset()
        assert tok.decode(tok.encode(charset, add_special_tokens=False)) == charset
        model = base.load_model()
        assert model.config.hidden_size == SIZES["tiny"][0]
        assert model.generation_config.pad_token_id == tok.pad_token_id
        assert not list((home / "tmp").iterdir())      # training scratch cleaned up

    def fail(*args, **kwargs):
        raise AssertionError("the base was trained again")

    monkeypatch.setattr(pretrain, "train_base_dir", fail)
    with Library.open(home) as lib:                    # a later session, same home
        again, log = ensure_base(lib, "strings-tiny", BaseRecipe(**dataclasses.asdict(RECIPE)))
        assert log is None
        assert again.fingerprint == base.fingerprint
        assert find_base(lib, RECIPE).fingerprint == base.fingerprint
        # any change to the recipe is another base
        assert find_base(lib, dataclasses.replace(RECIPE, steps=7)) is None
        assert find_base(lib, dataclasses.replace(RECIPE, tasks=["rev", "copy"])) is None
        with pytest.raises(AssertionError, match="trained again"):
            ensure_base(lib, "strings-tiny-2", dataclasses.replace(RECIPE, seed=1))


def test_same_recipe_same_fingerprint(tmp_path):
    """Deterministic: two libraries training the same recipe get the same weights."""
    fps = []
    for i in range(2):
        with Library.open(tmp_path / f"home{i}") as lib:
            fps.append(ensure_base(lib, "b", RECIPE)[0].fingerprint)
    assert fps[0] == fps[1]


def test_tiny_config_rejects_unknown_size():
    with pytest.raises(ValueError, match="unknown base size 'huge'"):
        tiny_config(10, "huge")
    cfg = tiny_config(10, "mini")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size) == SIZES["mini"]
