"""Export to places it cannot write: one line, exit 2, and nothing half-written left behind."""

from __future__ import annotations

import sys

import pytest

from .faults_helpers import cli, in_mount_namespace, one_line_error, unshare_works
from .test_homes import HERE


@pytest.fixture
def exportable(tmp_path):
    sys.path.insert(0, str(HERE.parent))
    from tinyskills import random_lora, tiny_strings_library

    lib, base, _ = tiny_strings_library(tmp_path)
    random_lora(lib, base, "a", 0)
    lib.close()
    return tmp_path / "home"


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_export_refuses_odd_destinations(exportable, tmp_path):
    home = exportable
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    cases = {
        home / "tmp" / "export": "inside the library home",
        home / "blobs" / "ab": "inside the library home",
        tmp_path / "dangling": "symbolic link",
        tmp_path / "full": "not empty",
        tmp_path / ("n" * 300): "too long",
        tmp_path / "model" / "config.json" / "x": "cannot export there",
    }
    for dest, message in cases.items():
        code, out, err = cli("--home", home, "export", "a", dest)
        assert one_line_error(code, err) and message in err, (dest, err)
    assert not (home / "tmp" / "export").exists() and not (home / "blobs" / "ab").exists()
    assert not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "model") == []
    code, out, err = cli("--home", home, "verify")
    assert code == 0


_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from faults.faults_helpers import cli
res = {{}}
for label, dest in {dests!r}.items():
    res[label] = cli("--home", {home!r}, "export", "a", dest)
print("RESULT" + json.dumps(res))
"""


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare for a tiny tmpfs and a read-only mount")
def test_export_to_a_full_disk_and_a_read_only_directory(exportable, tmp_path):
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    ro.mkdir()
    script = _SCRIPT.format(tests=str(HERE.parent), home=str(exportable),
                            dests={"full": str(full / "out"), "ro": str(ro / "out")})
    results = in_mount_namespace(f"mount -t tmpfs -o size=8k tmpfs {full} && mount --bind {ro} {ro} "
                                 f"&& mount -o remount,ro,bind {ro} {ro}", script)
    for label, why in (("full", "No space left on device"), ("ro", "Read-only file system")):
        code, out, err = results[label]
        assert one_line_error(code, err) and why in err and "nothing was left behind" in err, err
    assert list(ro.iterdir()) == []  # the tmpfs is gone with the namespace; ro never had one
