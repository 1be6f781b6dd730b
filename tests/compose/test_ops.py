"""merge_skills on real LoRA skills of a tiny Llama, against PEFT and by hand."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from skillbank.base import Base, fingerprint
from skillbank.compose.ops import MergeSpec, merge_skills
from skillbank.peft_io import import_peft
from skillbank.skill import SkillError


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("merge")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")
    dirs = []
    for i, alpha in enumerate((8, 4)):
        torch.manual_seed(10 + i)
        model = AutoModelForCausalLM.from_pretrained(root / "base")
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"],
                                                init_lora_weights=False))
        peft.save_pretrained(root / f"a{i}")
        dirs.append(root / f"a{i}")
    base = Base("tiny", root / "base", fingerprint(root / "base"), "causal")
    skills = [import_peft(d, f"s{i}", base) for i, d in enumerate(dirs)]
    for s in skills:
        s.version = 1
    return base, skills, dirs


def test_linear_is_exact_and_peft_factorwise_is_not(two_adapters):
    base, skills, dirs = two_adapters
    w = [0.5, 0.5]
    merged = merge_skills("m", skills, MergeSpec("linear", weights=w))
    key = "model.layers.0.self_attn.q_proj.weight"
    d0, d1 = skills[0].delta()[key], skills[1].delta()[key]
    assert torch.allclose(merged.delta()[key], 0.5 * d0 + 0.5 * d1, atol=1e-6)

    # PEFT's factor-wise linear merge of the same adapters
    model = AutoModelForCausalLM.from_pretrained(base.path)
    pm = PeftModel.from_pretrained(model, dirs[0], adapter_name="a0")
    pm.load_adapter(dirs[1], adapter_name="a1")
    pm.add_weighted_adapter(["a0", "a1"], w, "lin", combination_type="linear")
    layer = pm.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.scaling["lin"] == 1.0  # PEFT folds s_i into the factors: A' = Σ√(w_i s_i)A_i
    peft_dw = layer.lora_B["lin"].weight @ layer.lora_A["lin"].weight
    exact = 0.5 * d0 + 0.5 * d1
    off = torch.linalg.norm(peft_dw - exact) / torch.linalg.norm(exact)
    assert off > 0.1  # PEFT is off by the cross terms
    # ... and the gap is exactly the cross terms √(w0 s0 w1 s1)(B0 A1 + B1 A0)
    t = {k: s.tensors for k, s in enumerate(skills)}
    m = "model.layers.0.self_attn.q_proj"
    A = [t[i][f"{m}.lora_A.weight"] for i in (0, 1)]
    B = [t[i][f"{m}.lora_B.weight"] for i in (0, 1)]
    s = [8 / 4, 4 / 4]
    cross = (0.5 * s[0] * 0.5 * s[1]) ** 0.5 * (B[0] @ A[1] + B[1] @ A[0])
    assert torch.allclose(peft_dw - exact, cross, atol=1e-5)


def test_cat_equals_sum_of_outputs(two_adapters):
    base, skills, _ = two_adapters
    merged = merge_skills("c", skills, MergeSpec("cat", weights=[1.0, 0.7]))
    assert merged.kind == "lora" and merged.config["r"] == 8
    assert merged.metrics["merge_error"]["max"] == 0.0
    x = torch.tensor([[3, 5, 7, 9, 11]])
    m_cat = base.load_model([merged])
    m_sum = base.load_model()
    from skillbank.base import apply_skill

    apply_skill(m_sum, skills[0], base, 1.0)
    apply_skill(m_sum, skills[1], base, 0.7)
    assert torch.allclose(m_cat(x).logits, m_sum(x).logits, atol=1e-5)


def test_rank_refactor_records_error(two_adapters):
    _, skills, _ = two_adapters
    full = merge_skills("f", skills, MergeSpec("linear", rank=8))
    assert full.kind == "lora" and full.metrics["merge_error"]["max"] < 1e-5  # rank 4+4 fits in 8
    low = merge_skills("l", skills, MergeSpec("linear", rank=2))
    assert 0.1 < low.metrics["merge_error"]["max"] < 1.0
    dw = merge_skills("d", skills, MergeSpec("linear")).delta()
    for p, e in low.metrics["merge_error"]["per_matrix"].items():
        got = torch.linalg.norm(dw[p] - low.delta()[p]) / torch.linalg.norm(dw[p])
        assert got.item() == pytest.approx(e, rel=1e-4)


def test_lineage_recipe_and_diagnostics(two_adapters):
    _, skills, _ = two_adapters
    m = merge_skills("t", skills, MergeSpec("ties", density=0.5, convention="mergekit"))
    assert m.lineage == ["s0@1", "s1@1"] and m.recipe["convention"] == "mergekit"
    diag = m.metrics["diagnostics"]
    assert set(diag["cosine"]) == {"s0@1|s1@1"} and -1 <= diag["cosine"]["s0@1|s1@1"] <= 1
    assert all(0 <= v <= 1 for v in diag["sign_conflicts"].values())


def test_layer_swap_takes_layers_from_each(two_adapters):
    _, skills, _ = two_adapters
    m = merge_skills("sw", skills, MergeSpec("layer_swap", swap=[0, 1])).delta()
    d0, d1 = skills[0].delta(), skills[1].delta()
    assert torch.equal(m["model.layers.0.self_attn.q_proj.weight"], d0["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(m["model.layers.1.self_attn.v_proj.weight"], d1["model.layers.1.self_attn.v_proj.weight"])


@pytest.mark.parametrize("spec", [MergeSpec("nope"), MergeSpec("linear", weights=[1.0]),
                                  MergeSpec("ties", density=0.0)])
def test_bad_specs(two_adapters, spec):
    with pytest.raises(SkillError):
        merge_skills("x", two_adapters[1], spec)
