"""Shared fixtures: a tiny Llama model directory, a fresh library home, a PEFT LoRA adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def make_llama_dir(path: Path, seed: int = 0, **overrides) -> Path:
    """Save a tiny random LlamaForCausalLM (safetensors) to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = dict(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**kwargs)).save_pretrained(path)
    return path


def make_peft_adapter(model_dir: Path, out: Path, seed: int = 1, r: int = 4, alpha: int = 8,
                      **lora_kwargs) -> Path:
    """Save a PEFT LoRA adapter (non-zero A and B) on q_proj, v_proj of ``model_dir``'s model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM", **lora_kwargs)
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture
def make_llama():
    """``make_llama(path, seed=0, **config_overrides)`` saves another tiny Llama."""
    return make_llama_dir


@pytest.fixture
def make_adapter():
    """``make_adapter(model_dir, out, seed=1, r=4, alpha=8, **lora_kwargs)`` saves an adapter."""
    return make_peft_adapter


@pytest.fixture(scope="session")
def _llama_dir_session(tmp_path_factory) -> Path:
    return make_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_llama_dir(_llama_dir_session) -> Path:
    """A tiny Llama model directory; shared across tests, so copy it before changing it."""
    return _llama_dir_session


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh, not yet created, library home directory."""
    return tmp_path / "home"


@pytest.fixture(scope="session")
def _adapter_session(_llama_dir_session, tmp_path_factory) -> Path:
    return make_peft_adapter(_llama_dir_session, tmp_path_factory.mktemp("adapter") / "lora")


@pytest.fixture
def peft_adapter_dir(_adapter_session) -> Path:
    """A PEFT LoRA adapter for ``tiny_llama_dir`` (q_proj, v_proj; r=4, alpha=8)."""
    return _adapter_session


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine PyTorch's
    spinning worker threads can slow these tests down tens of times."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
