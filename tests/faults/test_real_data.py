"""Bad input for classifiers on real-style data: a data file changed after training, rows
with empty text, labels seen only at evaluation, another encoding, a classifier on a base
it was not made on. Each: one line, nothing written."""

from __future__ import annotations

import json

import pytest

from skillbank.library import Library
from tinyskills import tiny_encoder

from .faults_helpers import cli, lost, one_line_error, snapshot


def state(home):
    """What a failed command must not change: the blobs and what the catalog says (its file
    may be rewritten byte-wise by SQLite's own WAL checkpoint, with the same content)."""
    with Library.open(home) as lib:
        rows = sorted(f"{r.name}@{r.version}" for r in lib.list())
        results = len(lib.results())
    return snapshot(home / "blobs"), rows, results


def rows(n: int = 240) -> list[dict]:
    words = ["audio", "video", "image", "sound", "graphic", "film"]
    return [{"task": "t", "text": f"{words[i % 6]} tool number {i}", "label": "ab"[i % 2]}
            for i in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("realbad")
    home = root / "home"
    with Library.open(home) as lib:
        lib.add_base("enc", tiny_encoder(root / "enc"))
    data = root / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    code, out, err = cli("--home", home, "train", "clf", "--base", "enc", "--data", data,
                         "--task", "t", "--steps", "3", "--no-probe")
    assert code == 0, err
    return root, home, data


def test_a_data_file_changed_since_training_is_named(trained):
    root, home, data = trained
    original = data.read_text()
    data.write_text(original.replace("tool number 7", "tool number seven"))
    try:
        before = state(home)
        for args in (["eval", "clf"], ["compose", "m", "--from", "clf", "--method", "linear",
                                       "--eval"]):
            code, _, err = cli("--home", home, *args)
            assert one_line_error(code, err) and "the data file changed since the recipe" in err
        after = state(home)
        assert not lost(before[0], after[0]) and before[1:] == after[1:]
    finally:
        data.write_text(original)
    code, _, err = cli("--home", home, "eval", "clf", "--n", "10")
    assert code == 0, err


@pytest.mark.parametrize("content, message", [
    ('{"task": "t", "text": "", "label": "a"}\n', "line 1: empty text"),
    ("task,text,label\nt,caf\xe9,a\n", "not UTF-8 text"),
])
def test_bad_rows_and_encodings(trained, tmp_path, content, message):
    _, home, _ = trained
    path = tmp_path / ("bad.csv" if content.startswith("task,") else "bad.jsonl")
    path.write_bytes(content.encode("latin-1"))
    before = state(home)
    code, _, err = cli("--home", home, "train", "x", "--base", "enc", "--data", path, "--task", "t")
    assert one_line_error(code, err) and message in err
    after = state(home)
    assert not lost(before[0], after[0]) and before[1:] == after[1:]


def test_a_label_only_in_the_eval_split(trained, tmp_path):
    from skillbank.worlds.base import split_of

    _, home, _ = trained
    r = rows()
    held = next(i for i, x in enumerate(r) if split_of(x["text"]) == "eval")
    r[held]["label"] = "only-here"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in r))
    code, _, err = cli("--home", home, "train", "x", "--base", "enc", "--data", path, "--task", "t")
    assert one_line_error(code, err) and "'only-here' appear only in the eval split" in err


def test_a_classifier_on_another_base(trained, tmp_path):
    root, home, data = trained
    with Library.open(home) as lib:   # a second, different encoder
        from transformers import BertConfig, BertModel

        BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32)).save_pretrained(
            tmp_path / "other")
        for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            (tmp_path / "other" / f).write_bytes((root / "enc" / f).read_bytes())
        lib.add_base("other", tmp_path / "other")
    code, _, err = cli("--home", home, "eval", "clf", "--base", "other", "--n", "5")
    assert one_line_error(code, err) and "other" in err
