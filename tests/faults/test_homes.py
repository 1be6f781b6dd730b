"""Every command against a damaged, a read-only and a missing home: exit 2 with one line on
stderr, no traceback, nothing lost (reads on a read-only home simply work)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skillbank.cli import app

from .faults_helpers import cli, in_mount_namespace, lost, one_line_error, snapshot, unshare_works

HERE = Path(__file__).parent


def commands(home: Path, model: Path, adapter: Path, out: Path) -> dict[str, list]:
    """One invocation of every command, each valid on a sound library holding base `tiny`
    and LoRA skill `a`; ``out`` is a writable directory outside the home."""
    sweep = out / "sweep.yaml"
    sweep.write_text("base: tiny\nworld: strings\ntrain:\n  - {name: s, task: rev, steps: 1}\n")
    examples = out / "examples.jsonl"
    examples.write_text('{"input": "abcd", "target": "dcba"}\n')
    return {
        "list": ["list"], "show": ["show", "a"], "versions": ["versions", "a"],
        "lineage": ["lineage", "a"], "verify": ["verify"], "base list": ["base", "list"],
        "export": ["export", "a", out / "exported"], "overlap": ["overlap", "g,g"],
        "tag": ["tag", "a@1", "stable"], "rm": ["rm", "a"], "gc": ["gc"],
        "base add": ["base", "add", "t2", "--from", model],
        "base train": ["base", "train", "b2", "--steps", "1"],
        "base family": ["base", "family", "f", "--sizes", "8x1,16x1", "--steps", "1"],
        "base predict": ["base", "predict", "f", "--task", "rev", "--size", "32x2", "--cap", "2"],
        "practice": ["practice", "p", "--base", "tiny", "--tasks", "rev", "--rounds", "1",
                     "--steps", "1", "--inputs", "2", "--samples", "1", "--n", "2"],
        "plan": ["plan", "pl", "--base", "tiny", "--examples", examples],
        "policy": ["policy", "tasks"],
        "import": ["import", adapter, "--name", "i", "--base", "tiny"],
        "train": ["train", "t", "--base", "tiny", "--task", "rev", "--steps", "1"],
        "eval": ["eval", "a", "--tasks", "rev", "--n", "2"],
        "compose": ["compose", "c", "--from", "a,a"],
        "route": ["route", "r", "--from", "a,a", "--steps", "1"],
        "localize": ["localize", "a", "--steps", "1"],
        "transfer": ["transfer", "rev", "--candidates", "a"],
        "skillmix": ["skillmix", "--base", "tiny"],
        "upscale": ["upscale", "--skill", "a", "--large-base", "tiny", "--task", "rev"],
        "continual": ["continual", "--tasks", "rev,rot", "--base", "tiny"],
        "curriculum": ["curriculum", "--base", "tiny"],
        "select": ["select", "--pool", "rev,rot", "--target", "rev", "--base", "tiny"],
        "sweep": ["sweep", sweep],
        "demo": ["demo", "--out", out / "demo"],
        "repro": ["repro", "composition", "--out", out / "repro"],
    }


READS = {"list", "show", "versions", "lineage", "verify", "base list", "export", "overlap", "policy"}


def test_the_table_covers_every_command(tmp_path):
    import typer.main

    group = typer.main.get_command(app)
    names = {n for n in group.commands if n != "base"} | {f"base {n}" for n in group.commands["base"].commands}
    assert names == set(commands(tmp_path, tmp_path, tmp_path, tmp_path))


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    """A library with base `tiny` and skill `a`, an adapter to import, the model directory."""
    import sys as _sys

    _sys.path.insert(0, str(HERE.parent))
    from tinyskills import random_lora, tiny_strings_library

    root = tmp_path_factory.mktemp("sound")
    lib, base, _ = tiny_strings_library(root)
    skill = random_lora(lib, base, "a", 0)
    import torch

    from skillbank.skill import Skill

    param = "model.layers.0.self_attn.q_proj.weight"
    lib.add(Skill("g", "sparse", base.fingerprint, {f"{param}.indices": torch.arange(0, 40, 4),
                                                    f"{param}.values": torch.ones(10)},
                  config={"shapes": {param: [32, 32]}}))
    from skillbank.peft_io import export_peft

    export_peft(skill, base, root / "adapter")
    lib.close()
    return root


def _copy_home(sound: Path, dest: Path) -> Path:
    shutil.copytree(sound / "home", dest / "home", symlinks=True)
    (dest / "out").mkdir()
    return dest / "home"


@pytest.mark.parametrize("damage", ["garbage catalog", "missing home"])
def test_every_command_on_a_broken_home(sound, tmp_path, damage):
    home = _copy_home(sound, tmp_path)
    if damage == "garbage catalog":
        (home / "catalog.sqlite").write_bytes(b"\x00garbage" * 4096)
    else:
        shutil.rmtree(home)
    before = snapshot(tmp_path)
    for label, args in commands(home, sound / "model", sound / "adapter", tmp_path / "out").items():
        if damage == "missing home" and label not in READS | {"tag", "rm", "gc"}:
            continue  # these make a new library, as a first run should
        code, out, err = cli("--home", home, *args)
        if damage == "garbage catalog" and label == "verify":
            assert code == 1 and "cannot be read at all" in out
            continue
        assert one_line_error(code, err), (label, code, err)
        expected = "cannot be read" if damage == "garbage catalog" else "no library at"
        assert expected in err, (label, err)
    assert lost(before, snapshot(tmp_path)) == []
    assert damage != "missing home" or not home.exists()


_RO_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from faults.faults_helpers import cli
from faults.test_homes import commands
from pathlib import Path
home, model, adapter, out = map(Path, {paths!r})
res = {{}}
for label, args in commands(home, model, adapter, out).items():
    code, o, e = cli("--home", home, *args)
    res[label] = [code, o[-300:], e]
print("RESULT" + json.dumps(res))
"""


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare for a private read-only mount")
def test_every_command_on_a_read_only_home(sound, tmp_path):
    """The home is bind-mounted read-only in a private mount namespace (root ignores file
    modes, a read-only mount it cannot): reads work, writes are refused in one line."""
    home = _copy_home(sound, tmp_path)
    before = snapshot(home)
    script = _RO_SCRIPT.format(tests=str(HERE.parent), paths=[str(home), str(sound / "model"),
                                                                str(sound / "adapter"), str(tmp_path / "out")])
    results = in_mount_namespace(f"mount --bind {home} {home} && "
                                 f"mount -o remount,ro,bind {home} {home}", script, timeout=600)
    for label, (code, out, err) in results.items():
        if label in READS:
            assert code == 0 and err == "", (label, code, err)
        else:
            assert one_line_error(code, err) and "read-only" in err, (label, code, err)
    assert (tmp_path / "out" / "exported" / "adapter_model.safetensors").is_file()
    assert lost(before, snapshot(home)) == []


_FULL_SCRIPT = """
import json, os, shutil, sys
sys.path.insert(0, {tests!r})
from faults.faults_helpers import cli, snapshot
home = {home!r}
shutil.copytree({sound_home!r}, home, symlinks=True)
before = snapshot(__import__("pathlib").Path(home))
with open(os.path.join({mount!r}, "filler"), "wb", buffering=0) as f:  # fill the disk up
    for size in (65536, 4096, 512, 1):
        try:
            while True:
                f.write(b"\\0" * size)
        except OSError:
            pass
res = {{"import": cli("--home", home, "import", {adapter!r}, "--name", "i", "--base", "tiny"),
        "train": cli("--home", home, "train", "t", "--base", "tiny", "--task", "rev", "--steps", "1"),
        "tag": cli("--home", home, "tag", "a@1", "stable")}}
os.unlink(os.path.join({mount!r}, "filler"))
res["verify"] = cli("--home", home, "verify")
res["list"] = cli("--home", home, "list", "--json")
after = snapshot(__import__("pathlib").Path(home))
res["lost"] = sorted(k for k, v in before.items() if after.get(k) != v and not k.startswith("catalog"))
res["tmp"] = sorted(os.listdir(os.path.join(home, "tmp")))
print("RESULT" + json.dumps(res))
"""


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare for a tiny tmpfs")
def test_writes_to_a_home_on_a_full_disk_fail_in_one_line_and_lose_nothing(sound, tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    script = _FULL_SCRIPT.format(tests=str(HERE.parent), home=str(mount / "home"), mount=str(mount),
                                 sound_home=str(sound / "home"), adapter=str(sound / "adapter"))
    res = in_mount_namespace(f"mount -t tmpfs -o size=1m tmpfs {mount}", script)
    for label in ("import", "train", "tag"):
        code, out, err = res[label]
        assert one_line_error(code, err), (label, err)
        assert any(why in err for why in ("No space left on device", "database or disk is full",
                                          "the disk holding it is full")), (label, err)
    assert res["verify"][0] == 0, res["verify"]
    assert sorted(r["name"] for r in json.loads(res["list"][1])) == ["a", "g"]
    assert res["lost"] == [] and res["tmp"] == []
