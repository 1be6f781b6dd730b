"""PEFT interchange: lossless import/export, same logits as plain PEFT, refused bad inputs."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file

from skillbank.library import Library
from skillbank.peft_io import PREFIX, export_peft, import_peft
from skillbank.skill import Skill, SkillError

IDS = torch.tensor([[1, 5, 9, 3, 31, 0, 7, 2]])


@pytest.fixture
def lib(home):
    with Library.open(home) as library:
        yield library


def peft_logits(base_path, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), adapter_dir)
    with torch.no_grad():
        return model.eval()(IDS).logits


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_round_trip_is_lossless(lib, tiny_llama_dir, peft_adapter_dir, tmp_path):
    base = lib.add_base("tiny", tiny_llama_dir)
    skill = lib.add(import_peft(peft_adapter_dir, "qv", base))
    assert (skill.version, skill.kind, skill.base) == (1, "lora", base.fingerprint)
    assert sorted(skill.tensors)[0] == "model.layers.0.self_attn.q_proj.lora_A.weight"
    assert skill.config["r"] == 4 and skill.config["lora_alpha"] == 8
    assert "base_model_name_or_path" not in skill.config

    out = export_peft(lib.get("qv"), base, tmp_path / "exported")
    original = load_file(peft_adapter_dir / "adapter_model.safetensors")
    exported = load_file(out / "adapter_model.safetensors")
    assert sorted(exported) == sorted(original) and len(original) == 8
    assert all(k.startswith("base_model.model.model.layers.") for k in exported)
    for key, t in original.items():
        assert exported[key].dtype == t.dtype and torch.equal(exported[key], t), key
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert config["base_model_name_or_path"] == str(base.path)
    assert json.loads((out / "skillbank.json").read_text())["content_hash"] == skill.content_hash

    # importing the export again is the same content: no new version
    assert lib.add(import_peft(out, "qv", base)).version == 1
    assert len(lib.versions("qv")) == 1


@pytest.mark.parametrize("lora", [{}, {"use_rslora": True}], ids=["alpha/r", "rslora"])
def test_same_logits_as_plain_peft(lib, tiny_llama_dir, make_adapter, tmp_path, lora):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", seed=3, **lora)
    base = lib.add_base("tiny", tiny_llama_dir)
    skill = lib.add(import_peft(adapter, "qv", base))
    out = export_peft(lib.get("qv"), base, tmp_path / "exported")
    ours = logits(base.load_model([lib.get("qv")]))
    theirs = peft_logits(base.path, out)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(peft_logits(base.path, adapter), theirs, atol=1e-6, rtol=0)
    # the skill does change the model, so the comparison means something
    assert (ours - logits(base.load_model())).abs().max() > 1e-3
    assert skill.config.get("use_rslora", False) == bool(lora)


def test_fan_in_fan_out_gpt2(lib, tmp_path):
    """GPT-2 stores W as in×out (Conv1D): ΔW must be transposed, as PEFT does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=32, n_embd=16, n_layer=2, n_head=2, n_positions=64)
                    ).save_pretrained(tmp_path / "gpt2")
    torch.manual_seed(1)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True,
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2"), cfg
                   ).save_pretrained(tmp_path / "adapter")
    base = lib.add_base("gpt2", tmp_path / "gpt2")
    skill = lib.add(import_peft(tmp_path / "adapter", "attn", base))
    assert skill.delta()["transformer.h.0.attn.c_attn.weight"].shape == (16, 48)
    out = export_peft(lib.get("attn"), base, tmp_path / "exported")
    torch.testing.assert_close(logits(base.load_model([lib.get("attn")])),
                               peft_logits(base.path, out), atol=1e-5, rtol=0)


def test_model_card(lib, tiny_llama_dir, peft_adapter_dir, tmp_path):
    base = lib.add_base("tiny", tiny_llama_dir)
    skill = import_peft(peft_adapter_dir, "qv", base)
    skill.lineage = ["donor@3", "other@1"]
    skill.recipe = dict(skill.recipe, seed=17, lr=0.001)
    skill.metrics = {"acc": 0.75}
    lib.add(skill)
    out = export_peft(lib.get("qv"), base, tmp_path / "exported")
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card
    assert base.fingerprint in card and "**tiny**" in card
    assert "`donor@3`" in card and "`other@1`" in card
    recipe = json.loads(card.split("## Recipe")[1].split("```json")[1].split("```")[0])
    assert recipe == lib.get("qv").recipe and recipe["seed"] == 17 and recipe["method"] == "import"
    assert '"acc": 0.75' in card and "# qv (version 1)" in card


def test_export_refusals(lib, tiny_llama_dir, peft_adapter_dir, tmp_path):
    base = lib.add_base("tiny", tiny_llama_dir)
    lib.add(import_peft(peft_adapter_dir, "qv", base))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(SkillError, match="not empty"):
        export_peft(lib.get("qv"), base, full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_peft(lib.get("qv"), base, empty) / "adapter_model.safetensors").is_file()
    with pytest.raises(SkillError, match="only lora"):
        dense = Skill("d", "delta", base.fingerprint, {"w": torch.zeros(1)})
        export_peft(dense, base, tmp_path / "d")
    assert not list(tmp_path.glob(".*.part"))


# -- bad inputs: one-line SkillError, nothing written ------------------------------------------
# Each edit breaks the adapter copy ``d``; ``request`` gives it the test's fixtures.
def _pickled(d, request):
    (d / "adapter_model.safetensors").unlink()
    marker = request.getfixturevalue("tmp_path") / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (d / "adapter_model.bin").write_bytes(pickle.dumps(Evil()))
    return marker


def _edit_config(**changes):
    def edit(d, request):
        cfg = json.loads((d / "adapter_config.json").read_text())
        cfg.update(changes)
        (d / "adapter_config.json").write_text(json.dumps(cfg))
    return edit


def _write(name, data):
    def edit(d, request):
        (d / name).write_bytes(data)
    return edit


def _tensors(change):
    def edit(d, request):
        from safetensors.torch import save_file

        save_file(change(load_file(d / "adapter_model.safetensors")), d / "adapter_model.safetensors")
    return edit


def _wide(d, request):
    """An adapter saved from a model with hidden_size=24 (the base has 16)."""
    wide = request.getfixturevalue("tmp_path") / "wide"
    request.getfixturevalue("make_llama")(wide, hidden_size=24)
    shutil.rmtree(d)
    request.getfixturevalue("make_adapter")(wide, d)


BAD = {
    "pickled": (_pickled, "never unpickles"),
    "malformed-config": (_write("adapter_config.json", b'{"peft_type": "LORA", "r": 4,'),
                         "malformed JSON"),
    "binary-config": (_write("adapter_config.json", b"\xff\xfe\x00\x81"), "not UTF-8"),
    "list-config": (_write("adapter_config.json", b"[1, 2]"), "JSON object"),
    "missing-config": (lambda d, t: (d / "adapter_config.json").unlink(), "no adapter_config.json"),
    "missing-weights": (lambda d, t: (d / "adapter_model.safetensors").unlink(),
                        "no adapter_model.safetensors"),
    "missing-dir": (lambda d, t: shutil.rmtree(d), "no such directory"),
    "garbage-weights": (_write("adapter_model.safetensors", b"\xff" * 64),
                        "unreadable safetensors"),
    "wrong-shapes": (_wide, "do not fit"),
    "not-lora": (_edit_config(peft_type="IA3"), "only LORA"),
    "bad-r": (_edit_config(r=0), "r must be a positive integer"),
    "bool-r": (_edit_config(r=True), "r must be a positive integer"),
    "nan-alpha": (_edit_config(lora_alpha=float("nan")), "lora_alpha must be a positive finite"),
    "inf-alpha": (_edit_config(lora_alpha=float("inf")), "lora_alpha must be a positive finite"),
    "huge-alpha": (_edit_config(lora_alpha=1e300), "lora_alpha must be a positive finite"),
    "string-rslora": (_edit_config(use_rslora="yes"), "use_rslora must be true or false"),
    "targets-miss-a-module": (_edit_config(target_modules=["q_proj"]), "does not select"),
    "targets-name-an-absent-module": (_edit_config(target_modules=["q_proj", "v_proj", "k_proj"]),
                                      "holds no tensors for it"),
    "targets-bad-regex": (_edit_config(target_modules="(("), "not a valid regex"),
    "two-keys-one-module": (_tensors(lambda t: {**t, **{k.replace(PREFIX, PREFIX + "extra."): v.clone()
                                                       for k, v in t.items()}}), "the one module"),
    "nan-tensor": (_tensors(lambda t: {k: v * float("nan") for k, v in t.items()}), "NaN or Inf"),
    "int-tensor": (_tensors(lambda t: {k: v.to(torch.int32) for k, v in t.items()}), "skills hold floats"),
    "rank-mismatch": (_edit_config(r=2), "rank 4 but the config says r=2"),
    "dora": (_edit_config(use_dora=True), "DoRA"),
    "bias": (_edit_config(bias="all"), "bias"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_adapter(case, lib, home, tiny_llama_dir, peft_adapter_dir, tmp_path, request):
    base = lib.add_base("tiny", tiny_llama_dir)
    d = shutil.copytree(peft_adapter_dir, tmp_path / "adapter")
    edit, message = BAD[case]
    marker = edit(d, request)
    with pytest.raises(SkillError, match=message) as e:
        lib.add(import_peft(d, "x", base))
    assert "\n" not in str(e.value)
    assert lib.list() == []
    assert not list((home / "blobs").rglob("*")) and not list((home / "tmp").iterdir())
    if marker is not None:
        assert not marker.exists()


def test_module_not_in_base(lib, tiny_llama_dir, peft_adapter_dir, tmp_path):
    from safetensors.torch import save_file

    base = lib.add_base("tiny", tiny_llama_dir)
    d = shutil.copytree(peft_adapter_dir, tmp_path / "adapter")
    t = load_file(d / "adapter_model.safetensors")
    t = {k.replace("q_proj", "z_proj"): v for k, v in t.items()}
    save_file(t, d / "adapter_model.safetensors")
    with pytest.raises(SkillError, match="z_proj.*not in base"):
        import_peft(d, "x", base)
    save_file({"base_model.model.foo.bar": torch.zeros(2)}, d / "adapter_model.safetensors")
    with pytest.raises(SkillError, match="unexpected tensor"):
        import_peft(d, "x", base)
