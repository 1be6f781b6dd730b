"""Library: versions, aliases, removal, lineage, results, bases and their fingerprints."""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from skillbank.base import BaseMismatch, fingerprint
from skillbank.catalog import SCHEMA_VERSION
from skillbank.journal import filesystem_type, journal_mode
from skillbank.library import Library, LibraryError
from skillbank.skill import Skill, SkillError

FP = "ab" * 32


def make(name="s", value=1.0, base=FP, lineage=(), recipe=None) -> Skill:
    return Skill(name, "delta", base, {"w": torch.full((2, 3), value)},
                 lineage=list(lineage), recipe=recipe or {"method": "test", "value": value})


def blobs(home):
    return sorted(p for p in (home / "blobs").glob("*/*"))


# -- versions ----------------------------------------------------------------------------
def test_add_versions_and_dedup(home):
    with Library.open(home) as lib:
        made, new = lib.store(make(value=1.0))
        assert made.version == 1 and new is True
        first = lib.get("s@1")
        offered = make(value=1.0, recipe={"method": "other"}, lineage=["p@1"])
        again, new = lib.store(offered)
        assert again.version == 1 and new is False
        # the caller's skill is left as it was
        assert offered.version is None and offered.recipe == {"method": "other"}
        # what comes back is the stored version 1, not the new recipe
        assert (again.recipe, again.lineage, again.created) == (first.recipe, [], first.created)
        assert [r.version for r in lib.versions("s")] == [1]
        assert len(blobs(home)) == 1
        assert lib.add(make(value=2.0)).version == 2
        assert [r.version for r in lib.versions("s")] == [1, 2]
        assert lib.resolve("s").version == 2
        assert lib.resolve("s@latest").version == 2
        assert lib.get("s").tensors["w"][0, 0].item() == 2.0
        # same tensors under another name: its own version 1, shared blob
        assert lib.add(make("t", value=2.0)).version == 1
        assert len(blobs(home)) == 2
        assert [(r.name, r.version) for r in lib.list()] == [("s", 2), ("t", 1)]


def test_versions_are_immutable(home):
    with Library.open(home) as lib:
        lib.add(make(value=1.0, recipe={"method": "first"}))
        lib.add(make(value=2.0, recipe={"method": "second"}))
        v1 = lib.get("s@1")
        assert torch.equal(v1.tensors["w"], torch.full((2, 3), 1.0))
        assert v1.recipe == {"method": "first"} and v1.version == 1
        assert lib.get("s@2").recipe == {"method": "second"}


def test_config_is_part_of_content(home):
    with Library.open(home) as lib:
        tensors = {"x.lora_A.weight": torch.ones(1, 2), "x.lora_B.weight": torch.ones(2, 1)}
        a = Skill("s", "lora", FP, tensors, config={"lora_alpha": 1})
        assert lib.add(a).version == 1 and a.version is None
        a.config = {"lora_alpha": 2}
        assert lib.add(a).version == 2


def test_aliases_move_and_reserved(home):
    with Library.open(home) as lib:
        lib.add(make(value=1.0))
        lib.add(make(value=2.0))
        assert lib.tag("s@1", "stable").version == 1
        assert lib.resolve("s@stable").version == 1
        assert lib.get("s@1").tags == ["stable"]
        lib.tag("s@2", "stable")
        assert lib.resolve("s@stable").version == 2
        assert lib.tags("s") == ["stable"]
        assert lib.get("s@1").tags == []
        for bad in ("latest", "3", "12"):
            with pytest.raises(LibraryError, match="reserved"):
                lib.tag("s@1", bad)
        with pytest.raises(SkillError):
            lib.tag("s@1", "a b")
        with pytest.raises(LibraryError, match="no version or alias"):
            lib.resolve("s@nope")
        with pytest.raises(LibraryError, match="no version 9"):
            lib.resolve("s@9")
        with pytest.raises(LibraryError, match="nothing after"):
            lib.resolve("s@")
        with pytest.raises(LibraryError, match="no skill named"):
            lib.get("missing")


def test_rm_one_and_all_and_no_reuse(home):
    with Library.open(home) as lib:
        for v in (1.0, 2.0, 3.0):
            lib.add(make(value=v))
        lib.tag("s@3", "best")
        assert [(r.name, r.version) for r in lib.rm("s@3")] == [("s", 3)]
        assert [r.version for r in lib.versions("s")] == [1, 2]
        assert lib.tags("s") == []  # the alias went with its version
        # the removed latest's number is never given out again, even for the same content
        assert lib.add(make(value=3.0)).version == 4
        assert lib.add(make(value=5.0)).version == 5
        assert [r.version for r in lib.rm("s")] == [1, 2, 4, 5]
        assert lib.list() == []
        with pytest.raises(LibraryError, match="no skill named"):
            lib.versions("s")
        with pytest.raises(LibraryError):
            lib.rm("s")
        assert lib.add(make(value=1.0)).version == 6
        # removal leaves blobs for gc, which removes only unreferenced ones
        assert len(blobs(home)) == 4  # values 1, 2, 3, 5
        assert lib.gc()["blobs_removed"] == 3
        assert len(blobs(home)) == 1
        assert lib.get("s@6").tensors["w"][0, 0].item() == 1.0
        assert lib.verify() == []


def test_lineage_recursive_with_missing_parent(home):
    with Library.open(home) as lib:
        lib.add(make("grand", 1.0, recipe={"method": "train"}))
        lib.add(make("parent", 2.0, lineage=["grand@1", "ghost@7"], recipe={"method": "finetune"}))
        lib.add(make("other", 3.0, recipe={"method": "train"}))
        lib.add(make("child", 4.0, lineage=["parent@1", "other@1"], recipe={"method": "merge"}))
        assert lib.lineage("child") == [
            (0, "child@1", {"method": "merge"}),
            (1, "parent@1", {"method": "finetune"}),
            (2, "grand@1", {"method": "train"}),
            (2, "ghost@7", {"missing": True}),
            (1, "other@1", {"method": "train"}),
        ]
        assert lib.get("child").lineage == ["parent@1", "other@1"]


def test_results(home):
    with Library.open(home) as lib:
        a = lib.add_result("s@1", "strings", "reverse", {"acc": 0.5}, {"n": 10})
        b = lib.add_result("t@1", "strings", "upper", {"acc": 1.0})
        assert b == a + 1
        rows = lib.results()
        assert [(r["subject"], r["metrics"]) for r in rows] == [
            ("s@1", {"acc": 0.5}), ("t@1", {"acc": 1.0})]
        assert lib.results("s@1")[0]["spec"] == {"n": 10}
        assert lib.results("t@1")[0]["spec"] == {}


def test_schema_and_wal(home):
    Library.open(home).close()
    conn = sqlite3.connect(home / "catalog.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="schema 99"):
        Library.open(home)


def test_reopen_keeps_everything(home):
    with Library.open(home) as lib:
        lib.add(make(value=1.0))
        lib.tag("s@1", "stable")
    with Library.open(home) as lib:
        assert lib.get("s@stable").version == 1
        assert lib.resolve("s").content_hash == lib.get("s").content_hash != ""


# -- bases -------------------------------------------------------------------------------
def test_fingerprint_copies_match_changes_differ(tiny_llama_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    fp = fingerprint(tiny_llama_dir)
    assert len(fp) == 64 and fingerprint(copy) == fp
    weights = load_file(copy / "model.safetensors")
    key = sorted(weights)[0]
    weights[key].view(-1)[0] += 1e-3
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert fingerprint(copy) != fp
    # the file's own header metadata is not part of the model
    save_file(load_file(tiny_llama_dir / "model.safetensors"), copy / "model.safetensors")
    assert fingerprint(copy) == fp
    # so are keys that say where and how the config was written; the model's own are not
    config = json.loads((copy / "config.json").read_text())
    config.update(_name_or_path="/elsewhere", transformers_version="0.0")
    (copy / "config.json").write_text(json.dumps(config, indent=4))
    assert fingerprint(copy) == fp
    config["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(config))
    assert fingerprint(copy) != fp


def test_fingerprint_refuses_pickled_weights(tiny_llama_dir, tmp_path):
    model = tmp_path / "pickled"
    model.mkdir()
    shutil.copy(tiny_llama_dir / "config.json", model)
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(SkillError, match="pickle") as e:
        fingerprint(model)
    assert "safetensors" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SkillError, match="pickle"):
        Library.open(tmp_path / "home").add_base("b", model)
    assert not marker.exists()


def test_add_base(home, tiny_llama_dir, tmp_path):
    with Library.open(home) as lib:
        b = lib.add_base("tiny", tiny_llama_dir)
        assert b.fingerprint == fingerprint(tiny_llama_dir) and b.kind == "causal"
        assert b.path == home / "bases" / b.fingerprint and fingerprint(b.path) == b.fingerprint
        assert lib.add_base("tiny", tiny_llama_dir).fingerprint == b.fingerprint  # idempotent
        assert lib.base(b.fingerprint).name == "tiny"
        assert [x.name for x in lib.bases()] == ["tiny"]
        other = shutil.copytree(tiny_llama_dir, tmp_path / "other")
        w = load_file(other / "model.safetensors")
        next(iter(w.values())).view(-1)[0] += 1.0
        save_file(w, other / "model.safetensors")
        with pytest.raises(LibraryError, match=b.short):
            lib.add_base("tiny", other)
        with pytest.raises(LibraryError, match="no base named"):
            lib.base("nope")
        with pytest.raises(LibraryError, match="no such directory"):
            lib.add_base("x", tmp_path / "absent")
        with pytest.raises(SkillError, match="config.json"):
            lib.add_base("x", tmp_path)


@pytest.mark.parametrize("bars_on", [True, False])
def test_load_model_prints_no_loading_bar_and_restores_the_setting(home, tiny_llama_dir, capfd, bars_on):
    from transformers.utils import logging as hf_logging

    (hf_logging.enable_progress_bar if bars_on else hf_logging.disable_progress_bar)()
    try:
        with Library.open(home) as lib:
            lib.add_base("tiny", tiny_llama_dir).load_model()
        assert "Loading" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled() is bars_on
    finally:
        hf_logging.enable_progress_bar()


def test_apply_and_base_mismatch(home, tiny_llama_dir, make_llama, tmp_path):
    with Library.open(home) as lib:
        x = lib.add_base("x", tiny_llama_dir)
        y = lib.add_base("y", make_llama(tmp_path / "y", seed=1))
        assert x.fingerprint != y.fingerprint
        name = "model.layers.0.self_attn.q_proj.weight"
        dw = torch.arange(256, dtype=torch.float32).view(16, 16) / 256
        skill = lib.add(Skill("d", "delta", x.fingerprint, {name: dw}))
        plain = dict(x.load_model().named_parameters())[name].detach()
        applied = dict(x.load_model([lib.get("d")]).named_parameters())[name].detach()
        torch.testing.assert_close(applied, plain + dw)
        assert lib.base_of(skill).name == "x"
        with pytest.raises(BaseMismatch) as e:
            y.load_model([lib.get("d")])
        msg = str(e.value)
        assert x.fingerprint[:12] in msg and y.fingerprint[:12] in msg and "\n" not in msg
        wrong_shape = Skill("bad", "delta", x.fingerprint, {name: torch.zeros(3, 3)})
        with pytest.raises(SkillError, match="shape"):
            x.load_model([wrong_shape])
        with pytest.raises(SkillError, match="lacks"):
            x.load_model([Skill("bad", "delta", x.fingerprint, {"nope.weight": torch.zeros(1)})])
        with pytest.raises(LibraryError, match="not registered"):
            lib.base_of(make(base="0" * 64))


def test_add_base_when_another_process_registers_it_first(home, tiny_llama_dir, monkeypatch):
    """Two writers registering the same model: the one that loses the rename still succeeds."""
    import skillbank.basefiles as basefiles

    real_copy = basefiles.copy_model

    def racing_copy(src, dst):
        real_copy(src, dst)
        real_copy(src, home / "bases" / fingerprint(src))  # the other writer wins

    with Library.open(home) as lib:
        monkeypatch.setattr(basefiles, "copy_model", racing_copy)
        b = lib.add_base("tiny", tiny_llama_dir)
        assert fingerprint(b.path) == b.fingerprint
        assert list((home / "tmp").iterdir()) == []


# -- journal mode: WAL on one host, the rollback journal on a network file system ----------
MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
server:/export /mnt/shared nfs4 rw,vers=4.2 0 0
/dev/vdb1 /mnt/shared/local ext4 rw 0 0
//nas/skills /mnt/my\\040skills cifs rw 0 0
"""


@pytest.mark.parametrize("path, fstype", [
    ("/home/me/.skillbank", "ext4"),
    ("/mnt/shared", "nfs4"),
    ("/mnt/shared/team/home", "nfs4"),
    ("/mnt/shared/local/home", "ext4"),        # the longest mount point wins
    ("/mnt/sharedother", "ext4"),             # a prefix of the name is not a parent
    ("/mnt/my skills/h", "cifs"),             # octal escapes in /proc/mounts decoded
])
def test_filesystem_type_from_proc_mounts(path, fstype):
    assert filesystem_type(path, MOUNTS) == fstype


def test_journal_mode_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("SKILLBANK_JOURNAL", raising=False)
    assert journal_mode(tmp_path, "delete") == "delete"
    monkeypatch.setenv("SKILLBANK_JOURNAL", "DELETE")
    assert journal_mode(tmp_path) == "delete"
    assert journal_mode(tmp_path, "wal") == "wal"          # an explicit request wins
    monkeypatch.setenv("SKILLBANK_JOURNAL", "truncate")
    with pytest.raises(SkillError, match="journal mode must be one of wal, delete"):
        journal_mode(tmp_path)
    monkeypatch.delenv("SKILLBANK_JOURNAL")
    monkeypatch.setattr("skillbank.journal.Path.read_text",
                        lambda self, *a, **k: f"srv:/x {tmp_path.resolve()} nfs rw 0 0\n")
    assert journal_mode(tmp_path) == "delete"               # detected: a network file system


def test_library_opens_in_the_chosen_journal_mode(tmp_path):
    with Library.open(tmp_path / "h", journal="delete") as lib:
        assert lib.journal == "delete"
        assert lib.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        lib.add(Skill("s", "delta", "f" * 64, {"w": torch.ones(3)}))
    with Library.open(tmp_path / "h", journal="wal") as lib:    # switched back when alone
        assert lib.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert torch.equal(lib.get("s").tensors["w"], torch.ones(3))


def test_find_by_recipe(tmp_path):
    """`find`: the latest version with this base and recipe (key order and tuple/list
    don't matter) whose manifest passes `where`; None otherwise."""
    fp, other = "a" * 64, "b" * 64
    with Library.open(tmp_path / "h") as lib:
        for i, (base, recipe) in enumerate([(fp, {"lr": 1, "t": [1, 2]}), (other, {"lr": 1, "t": [1, 2]}),
                                            (fp, {"lr": 2}), (fp, {"t": [1, 2], "lr": 1})]):
            lib.add(Skill("s", "delta", base, {"w": torch.full((2,), float(i))}, recipe=recipe))
        assert lib.find("s", fp, {"t": (1, 2), "lr": 1}) == "s@4"
        assert lib.find("s", other, {"lr": 1, "t": [1, 2]}) == "s@2"
        assert lib.find("s", fp, {"lr": 1, "t": [1, 2]}, where=lambda m: m["version"] < 4) == "s@1"
        assert lib.find("s", fp, {"lr": 3}) is None
        assert lib.find("never-made", fp, {}) is None


# -- bases are verified like skills ------------------------------------------------------
def _flip_byte(path: Path, at: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_base_fails_verify_and_refuses_to_load(home, tiny_llama_dir):
    with Library.open(home) as lib:
        base = lib.add_base("tiny", tiny_llama_dir)
        assert lib.verify() == [] and set(base.files) >= {"config.json", "model.safetensors"}
        weights = base.path / "model.safetensors"
        _flip_byte(weights)  # same size: only the hash can tell
        assert lib.verify() == [{"what": "base tiny",
                                 "problem": "file model.safetensors is damaged (sha256 mismatch)"}]
        with pytest.raises(SkillError, match=r"^base tiny: file model.safetensors is damaged"):
            lib.base("tiny").load_model()
        _flip_byte(weights)  # restored: loads again, verify is clean
        lib.base("tiny").load_model()
        assert lib.verify() == []


def test_missing_or_truncated_base_is_one_line_error(home, tiny_llama_dir):
    with Library.open(home) as lib:
        base = lib.add_base("tiny", tiny_llama_dir)
        weights = base.path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4])
        with pytest.raises(SkillError, match=r"changed size .* refuses to load"):
            lib.base("tiny")
        shutil.rmtree(base.path)
        with pytest.raises(SkillError, match=r"^base tiny: directory .* is missing"):
            lib.base("tiny")
        assert [p["what"] for p in lib.verify()] == ["base tiny"]


def test_verify_refingerprints_the_weights(home, tiny_llama_dir, monkeypatch):
    """A change that keeps every recorded file hash (records rewritten) is still caught by the
    fingerprint of the weights."""
    with Library.open(home) as lib:
        base = lib.add_base("tiny", tiny_llama_dir)
        _flip_byte(base.path / "model.safetensors")
        lib._record_files(base.fingerprint, base.path)  # as if the records were damaged too
        assert lib.verify() == [{"what": "base tiny",
                                 "problem": "weights differ from the recorded fingerprint"}]


def test_re_adding_an_intact_copy_heals_a_damaged_base_and_keeps_its_record(home, tiny_llama_dir):
    with Library.open(home) as lib:
        base = lib.add_base("tiny", tiny_llama_dir, meta={"recipe": {"method": "pretrain"}})
        _flip_byte(base.path / "model.safetensors")
        assert lib.verify()
        with pytest.raises(LibraryError, match="registered as causal, not encoder"):
            lib.add_base("tiny", tiny_llama_dir, kind="encoder")
        healed = lib.add_base("tiny", tiny_llama_dir)
        assert lib.verify() == [] and healed.meta["recipe"] == {"method": "pretrain"}
        assert healed.meta["arch"]["blocks"] == "model.layers"
        healed.load_model()


def test_verify_records_the_files_of_a_base_registered_before_they_were(home, tiny_llama_dir):
    with Library.open(home) as lib:
        base = lib.add_base("tiny", tiny_llama_dir)
        lib._record_files(base.fingerprint, None)  # as a library made by an older skillbank
        assert lib.base("tiny").files == {}
        assert lib.verify() == [] and lib.base("tiny").files == base.files


def test_rm_keeps_the_members_a_router_or_chain_applies_at_run_time(home):
    with Library.open(home) as lib:
        lib.add(make("a", 1.0))
        lib.add(make("a", 2.0))
        lib.add(Skill("r", "router", FP, {"router.net.0.weight": torch.zeros(2, 2)},
                      config={"members": ["a@1"]}, lineage=["a@1"]))
        lib.add(Skill("c", "chain", FP, {}, config={"members": ["a@2"]}, lineage=["a@2"]))
        with pytest.raises(LibraryError, match=r"router r@1 applies a@1 at run time"):
            lib.rm("a@1")
        with pytest.raises(LibraryError, match=r"(router r@1|chain c@1) applies"):
            lib.rm("a")
        assert [r.version for r in lib.versions("a")] == [1, 2]  # nothing removed
        lib.rm("r")
        with pytest.raises(LibraryError, match=r"chain c@1 applies a@2"):
            lib.rm("a")
        assert lib.rm("a@1")[0].version == 1  # no longer needed by anyone
        lib.rm("c")
        assert lib.rm("a")[0].version == 2
