"""A base family: WIDTHxDEPTH shapes, parameter counts without weights, the token budget
rule by hand, refusals, and find-or-make of every member."""

from __future__ import annotations

from dataclasses import replace

import pytest
from transformers import LlamaForCausalLM

from skillbank.acquire.data import char_tokenizer
from skillbank.acquire.family import FamilyRecipe, check_family, ensure_family, parameters
from skillbank.acquire.pretrain import BaseRecipe, shape_of, tiny_config
from skillbank.library import Library
from skillbank.run import get_executor
from skillbank.worlds import get_world


def test_shapes():
    assert shape_of("48x3") == (48, 3, 6, 144)      # heads of 8, intermediate 3 × width
    assert shape_of("8x1") == (8, 1, 1, 24)
    assert shape_of("mini") == (64, 3, 4, 192)       # the named sizes still work
    for bad in ["50x2", "0x1", "16x0", "16x", "x2", "huge", "16x2x2", "4x1"]:
        with pytest.raises(ValueError, match="base size"):
            shape_of(bad)


def test_parameters_match_a_built_model():
    recipe = BaseRecipe(size="24x2")
    tok = char_tokenizer(get_world("strings").charset())
    model = LlamaForCausalLM(tiny_config(len(tok), "24x2", tok))
    assert parameters(recipe) == sum(p.numel() for p in model.parameters())


def test_the_token_budget_rule_by_hand():
    fam = FamilyRecipe(sizes=("16x2", "32x2", "64x3"), base=BaseRecipe(steps=100), token_exponent=0.5)
    n = [parameters(replace(fam.base, size=s)) for s in fam.sizes]
    assert [fam.member(s).steps for s in fam.sizes] == [round(100 * (x / n[0]) ** 0.5) for x in n]
    flat = replace(fam, token_exponent=0.0)
    assert {flat.member(s).steps for s in fam.sizes} == {100}
    assert fam.member("32x2").size == "32x2" and fam.member("32x2").tasks == fam.base.tasks


@pytest.mark.parametrize("sizes,exponent,match", [
    (("16x2",), 0.5, "at least two"),
    (("32x2", "16x2"), 0.5, "must increase"),
    (("16x2", "16x2"), 0.5, "repeated"),
    (("16x2", "17x2"), 0.5, "base size"),
    (("16x2", "32x2"), 1.5, "token exponent"),
])
def test_bad_families_are_refused(sizes, exponent, match):
    with pytest.raises(ValueError, match=match):
        check_family(FamilyRecipe(sizes=sizes, token_exponent=exponent))


def test_members_are_found_or_made(tmp_path):
    lib = Library.open(tmp_path / "home")
    fam = FamilyRecipe(sizes=("8x1", "16x1"), base=BaseRecipe(steps=2, batch_size=4, pool=16))
    with get_executor(None) as ex:
        first = ensure_family(lib, "f", fam, ex)
        again = ensure_family(lib, "f", fam, ex)
    assert [r["base"] for r in first] == ["f-8x1", "f-16x1"]
    assert [r["trained"] for r in first] == [True, True] and not any(r["trained"] for r in again)
    assert [r["fingerprint"] for r in first] == [r["fingerprint"] for r in again]
    assert first[0]["parameters"] < first[1]["parameters"]
    assert lib.base("f-16x1").meta["recipe"]["steps"] == fam.member("16x1").steps
