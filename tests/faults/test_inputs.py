"""Hostile or odd input: model directories with links, tokenizers, YAML/JSON bombs, text the
base cannot read, metadata that looks like console markup."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from skillbank.acquire.data import char_tokenizer, check_encodable
from skillbank.base import fingerprint
from skillbank.fields import check_size
from skillbank.library import Library
from skillbank.skill import Skill, SkillError
from skillbank.worlds.base import Example
from tinyskills import random_lora, tiny_strings_library

from .faults_helpers import cli, one_line_error


@pytest.fixture
def model(tmp_path, tiny_llama_dir):
    return shutil.copytree(tiny_llama_dir, tmp_path / "model")


def test_base_add_copies_only_model_files_and_follows_links_inside(home, model, tmp_path):
    (model / "notes.txt").write_text("not a model file")
    (model / "big.bin").write_bytes(b"\0" * 1000)
    (model / "sub").mkdir()
    (model / "sub" / "x").write_text("x")
    real = model / "real-config.json"
    (model / "config.json").rename(real)
    (model / "config.json").symlink_to(real.name)  # a link inside the directory: followed
    with Library.open(home) as lib:
        b = lib.add_base("tiny", model)
        assert sorted(p.name for p in b.path.iterdir()) == ["config.json", "generation_config.json",
                                                            "model.safetensors"]
        assert not (b.path / "config.json").is_symlink()
        assert lib.verify() == []


def test_base_add_follows_links_of_a_hugging_face_cache_snapshot(home, model, tmp_path):
    repo = tmp_path / "hub" / "models--org--tiny"
    snap = repo / "snapshots" / "abc123"
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in model.iterdir():
        shutil.copyfile(f, repo / "blobs" / f"blob-{f.name}")
        (snap / f.name).symlink_to(f"../../blobs/blob-{f.name}")
    with Library.open(home) as lib:
        assert lib.add_base("tiny", snap).fingerprint == fingerprint(model)


@pytest.mark.parametrize("link", ["outside", "loop", "dangling", "directory"])
def test_base_add_refuses_links_that_lead_outside_or_nowhere(home, model, tmp_path, link):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"not yours")
    target = {"outside": secret, "loop": model / "tokenizer.json", "dangling": tmp_path / "gone",
              "directory": tmp_path}[link]
    (model / "tokenizer.json").symlink_to(target)
    if link == "directory":
        (model / "tokenizer.json").unlink()
        (model / "tokenizer_extra").symlink_to(tmp_path, target_is_directory=True)
    code, out, err = cli("--home", home, "base", "add", "tiny", "--from", model)
    assert one_line_error(code, err), err
    assert "symbolic link" in err or "not a regular file" in err
    assert not (home / "bases").exists() or list((home / "bases").iterdir()) == []


def test_the_tokenizer_is_part_of_a_base_and_old_bases_keep_their_fingerprint(home, model, tmp_path):
    tok_a, tok_b = char_tokenizer("abc"), char_tokenizer("abcdef")
    a = shutil.copytree(model, tmp_path / "a")
    b = shutil.copytree(model, tmp_path / "b")
    tok_a.save_pretrained(a)
    tok_b.save_pretrained(b)
    assert fingerprint(a) != fingerprint(b)  # same weights, another tokenizer
    assert fingerprint(a, version=1) == fingerprint(b, version=1) == fingerprint(model, version=1)
    with Library.open(home) as lib:
        base_a = lib.add_base("a", a)
        assert lib.add_base("b", b).fingerprint != base_a.fingerprint
        # a base registered before fingerprints held the tokenizer: re-adding the same model
        # keeps its old fingerprint, the identity every skill on it names
        old = fingerprint(a, version=1)
        with lib._tx() as c:
            c.execute("UPDATE bases SET fingerprint=?, meta='{}' WHERE name='a'", (old,))
            c.execute("UPDATE base_files SET fingerprint=? WHERE fingerprint=?", (old, base_a.fingerprint))
        (home / "bases" / base_a.fingerprint).rename(home / "bases" / old)
        assert lib.verify() == []
        again = lib.add_base("a", a)
        assert again.fingerprint == old and again.meta["fingerprint_version"] == 1
        assert lib.verify() == []


def test_yaml_anchors_and_deep_nesting_are_refused_before_they_expand(tmp_path, model):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        bomb += f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]\n"
    (tmp_path / "bomb.yaml").write_text("base: tiny\n" + bomb)
    (tmp_path / "deep.yaml").write_text("base: tiny\ntrain: " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    with Library.open(tmp_path / "home") as lib:
        lib.add_base("t", model)
    for args, message in [(["sweep", tmp_path / "bomb.yaml"], "too large"),
                          (["sweep", tmp_path / "deep.yaml"], "nested"),
                          (["import", tmp_path / "adapter", "--name", "x", "--base", "t"], "nested too deeply")]:
        code, out, err = cli("--home", tmp_path / "home", *args)
        assert one_line_error(code, err) and message in err, err
    with pytest.raises(SkillError, match="nested more than 64"):
        check_size(json.loads("[" * 65 + "]" * 65), "x")
    with pytest.raises(SkillError, match="too large"):
        shared = list(range(1000))
        check_size([shared] * 101, "x")  # 101 uses of one 1000-value list


def test_text_the_base_cannot_read_is_refused_or_counted():
    tok = char_tokenizer("abc")
    ok = [Example("t", "ab", "ba"), Example("t", "abc", "cba")]
    assert check_encodable(tok, ok, "train x") == 0
    some = ok * 60 + [Example("t", "abz", "a")]  # one unknown character among ~700 tokens
    assert check_encodable(tok, some, "train x") == 1
    with pytest.raises(SkillError, match=r"outside the base's vocabulary .*'zzz'"):
        check_encodable(tok, ok + [Example("t", "zzz", "zz")], "train x")
    with pytest.raises(SkillError, match="9 tokens long .* at most 8"):
        check_encodable(tok, [Example("t", "abcabc", "a")], "train x", max_tokens=8)
    with pytest.raises(SkillError, match="1,000,001 characters long"):
        check_encodable(tok, [Example("t", "a" * 1_000_000, "a")], "train x", max_tokens=64)


def test_metadata_that_looks_like_markup_prints_as_written(home):
    with Library.open(home) as lib:
        lib.add(Skill("m", "delta", "0" * 64, {"w": torch.ones(2)},
                      metrics={"note": "[/bold] [red]alarm[/red] \x1b]0;title\x07"}))
    code, out, err = cli("--home", home, "show", "m")
    assert code == 0 and err == ""
    assert "[/bold] [red]alarm[/red]" in out and "\x1b" not in out


def test_sizes_that_would_exhaust_memory_are_refused(tmp_path):
    """A LoRA rank beyond a layer's smaller side, a merge re-factored to more than a matrix
    allows, a billion examples: each a one-line refusal, not minutes of work or an OOM."""
    from skillbank.acquire.lora import check_rank
    from skillbank.compose.ops import MergeSpec, merge_skills
    from skillbank.worlds import get_world

    lib, base, _ = tiny_strings_library(tmp_path)
    model = base.load_model()
    check_rank(model, ["q_proj", "v_proj"], 32)  # hidden 32: rank 32 is the most that means anything
    with pytest.raises(SkillError, match="rank 33 is more than the targeted layers allow"):
        check_rank(model, ["q_proj", "v_proj"], 33)
    a, b = random_lora(lib, base, "a", 0), random_lora(lib, base, "b", 1)
    assert merge_skills("m", [a, b], MergeSpec("linear", rank=32)).config["r"] == 32
    with pytest.raises(SkillError, match="rank 33 is more than the smallest merged matrix allows"):
        merge_skills("m", [a, b], MergeSpec("linear", rank=33))
    with pytest.raises(ValueError, match="more than a world generates at once"):
        get_world("strings").examples("rev", 10**9, seed=0)
    lib.close()
