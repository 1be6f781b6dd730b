"""One library, three architectures: what a LoRA adapts, where the blocks are and how a
parameter's block is read come from the model, not from Llama names. Tiny Llama-, GPT-2-
and BERT-style bases are built here; each goes through the operations it supports."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

from skillbank.acquire.data import char_tokenizer, training_batch
from skillbank.acquire.lora import LoraRecipe, train_lora
from skillbank.acquire.pretrain import tiny_config
from skillbank.arch import block_index
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.compose.route import RouterRecipe, train_router
from skillbank.evaluate.suites import evaluate_model
from skillbank.library import Library
from skillbank.localize.ops import GraftRecipe, localize
from skillbank.routed import load_routed
from skillbank.worlds import get_world

STEPS = dict(rank=2, alpha=4, steps=3, batch_size=4, pool=32)


def _causal_dir(path, family: str):
    tok = char_tokenizer(get_world("strings").charset())
    torch.manual_seed(0)
    if family == "llama":
        model = LlamaForCausalLM(tiny_config(len(tok), "tiny", tok))
    else:
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def causal(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    lib = Library.open(root / "home")
    base = lib.add_base(request.param, _causal_dir(root / "model", request.param))
    return request.param, lib, base


EXPECTED = {"llama": ("model.layers", ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj",
                                       "up_proj", "v_proj"), False),
            "gpt2": ("transformer.h", ("c_attn", "c_fc", "c_proj"), True)}


def test_train_merge_localize_route(causal):
    family, lib, base = causal
    blocks, targets, fan_in_fan_out = EXPECTED[family]
    assert (base.arch.blocks, base.arch.targets, base.arch.fan_in_fan_out) == \
        (blocks, targets, fan_in_fan_out)
    assert base.meta["arch"]["blocks"] == blocks  # recorded when the base was added

    skills = [lib.add(train_lora(t, base, LoraRecipe("strings", t, **STEPS))) for t in ("rot", "shift")]
    rot = skills[0]
    assert rot.config["target_modules"] == list(targets)
    assert rot.config["fan_in_fan_out"] is fan_in_fan_out
    # ΔW lands on the right weights the right way round: applying it equals PEFT's own forward
    tok = base.load_tokenizer()
    batch = training_batch(tok, get_world("strings").examples("rot", 3, seed=1))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    peft_model = get_peft_model(base.load_model(), LoraConfig(
        r=2, lora_alpha=4, target_modules=list(targets), fan_in_fan_out=fan_in_fan_out))
    set_peft_model_state_dict(peft_model, {f"base_model.model.{k}": v
                                           for k, v in rot.tensors.items()})
    with torch.no_grad():
        want = peft_model(**inputs).logits
        got = base.load_model([rot])(**inputs).logits
    assert torch.allclose(got, want, atol=1e-5)

    merged = merge_skills("both", skills, MergeSpec("linear"))
    assert merged.metrics["merge_error"]["max"] < 1e-5
    swapped = merge_skills("swap", skills, MergeSpec("layer_swap", swap=[0, 1]))
    for p, dw in swapped.delta().items():  # layer 0 from rot, layer 1 from shift
        src = skills[block_index(p)].delta()
        assert torch.allclose(dw, src[p])

    g = localize(base, rot, GraftRecipe(sparsity=0.05, steps=2, n_train=8, n_val=4,
                                        batch_size=4), n_eval=2)
    m = g.metrics["localization"]
    assert all(k.startswith(blocks + ".") for k in g.tensors)
    assert m["n_eligible"] == sum(p.numel() for n, p in base.load_model().named_parameters()
                                  if n.startswith(blocks + "."))

    router = lib.add(train_router("router", base, skills,
                                  RouterRecipe("strings", ("rot", "shift"), steps=2,
                                               batch_size=4, pool=16, width=8)))
    routed = load_routed(base, router, skills)
    assert 0.0 <= evaluate_model(routed, tok, get_world("strings"), "rot", 2, 0)["exact_match"] <= 1


def test_bert_style_encoder_facts_and_classifier(tmp_path):
    from skillbank.acquire.classify import ClassifierRecipe, train_classifier

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    char_tokenizer("abcdefghijklmnopqrstuvwxyz ").save_pretrained(tmp_path / "bert")
    lib = Library.open(tmp_path / "home")
    base = lib.add_base("bert", tmp_path / "bert", kind="encoder")
    assert base.arch.blocks == "encoder.layer" and base.arch.n_blocks == 2
    assert base.arch.targets == ("dense", "key", "query", "value")
    assert block_index("encoder.layer.1.attention.self.query.weight") == 1
    data = tmp_path / "d.jsonl"
    rows = [f'{{"task": "t", "text": "{w}", "label": "{w[0]}"}}' for w in
            ["abc", "acd", "bcd", "bde", "abd", "bce", "aef", "bfg"] * 4]
    data.write_text("\n".join(rows) + "\n")
    recipe = ClassifierRecipe(world="files", task="t", world_args={"path": str(data)},
                              rank=2, alpha=4, steps=2, batch_size=4)
    skill = lib.add(train_classifier("cls", base, recipe))
    assert {"key", "query", "value"} <= set(skill.config["target_modules"])
    assert skill.recipe["world_args"]["sha256"]  # the data file is named by content
