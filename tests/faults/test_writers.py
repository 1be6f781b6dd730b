"""Faults: corrupted blobs, writers killed with SIGKILL, and many writers at once."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
import torch
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library, LibraryError
from skillbank.skill import Skill

FP = "0" * 64


def blob_files(home):
    return {p.name for p in (home / "blobs").glob("*/*")}


def referenced(lib):
    return {r.blob for r in lib._rows()}


# -- corruption ---------------------------------------------------------------------------
def test_flipped_byte_is_caught(home):
    with Library.open(home) as lib:
        lib.add(Skill("good", "delta", FP, {"w": torch.arange(6.0)}))
        lib.add(Skill("bad", "delta", FP, {"w": torch.arange(100.0)}))
        row = lib.resolve("bad")
        path = lib.blob_path(row.blob)
        data = bytearray(path.read_bytes())
        data[len(data) - 7] ^= 0x01  # one bit of one tensor value
        path.write_bytes(bytes(data))

        assert lib.verify() == [{"what": "bad@1", "problem": f"blob {row.blob[:12]} damaged"}]
        with pytest.raises(LibraryError, match="damaged"):
            lib.get("bad")
        assert torch.equal(lib.get("good").tensors["w"], torch.arange(6.0))

    result = CliRunner().invoke(app, ["--home", str(home), "verify"])
    assert result.exit_code == 1 and "bad@1" in result.stdout and "damaged" in result.stdout
    result = CliRunner().invoke(app, ["--home", str(home), "verify", "--json"])
    assert result.exit_code == 1
    assert '"ok": false' in result.stdout

    path.unlink()
    with Library.open(home) as lib:
        assert lib.verify()[0]["problem"].endswith("missing")
        with pytest.raises(LibraryError, match="missing"):
            lib.get("bad")


# Writers run as real processes forked from a forkserver that has already imported skillbank,
# so that each starts in milliseconds instead of re-importing torch on 2 busy cores.
def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["skillbank.library", __name__])
    return ctx


def _writer(home, start, ready, log):
    """Add ~20 MB versions of `big` forever, logging each commit with one atomic write."""
    lib = Library.open(home)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    ready.set()
    for i in range(start, start + 1000):
        s = lib.add(Skill("big", "delta", FP, {"w": torch.full((5_000_000,), float(i))}))
        os.write(fd, f"{s.version} {i}\n".encode())


def test_sigkill_mid_add_leaves_no_partial_skill(home, tmp_path):
    Library.open(home).close()
    ctx = _context()
    rng = random.Random(0)
    log = tmp_path / "committed.log"
    for run in range(4):
        ready = ctx.Event()
        proc = ctx.Process(target=_writer, args=(str(home), 1000 * run, ready, str(log)))
        proc.start()
        assert ready.wait(60)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.kill()  # SIGKILL
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
    committed = dict(tuple(map(int, line.split())) for line in log.read_text().splitlines())

    with Library.open(home) as lib:
        rows = lib.versions("big") if lib.list() else []
        versions = [r.version for r in rows]
        assert versions == list(range(1, len(versions) + 1))  # no gaps, no half-written row
        assert set(committed) <= set(versions)  # every reported commit survived
        assert len(versions) >= 1
        for r in rows:
            t = lib.get(f"big@{r.version}").tensors["w"]  # get checks the sha256
            assert t.shape == (5_000_000,)
            assert t[0].item() == t[-1].item()
            if r.version in committed:
                assert t[0].item() == committed[r.version]
        assert lib.verify() == []
        lib.gc()
        assert blob_files(home) == referenced(lib)
        assert list((home / "tmp").iterdir()) == []
        assert lib.verify() == []


# -- many writers at once -----------------------------------------------------------------
def _worker(home, k, go, versions, journal=None):
    go.wait()
    lib = Library.open(home, journal=journal)
    for j in range(5):
        lib.add(Skill(f"w{k}-s{j}", "delta", FP, {"w": torch.full((64,), float(k * 10 + j))}))
        s = lib.add(Skill("shared", "delta", FP, {"w": torch.full((64,), k * 10 + j + 0.5)}))
        versions.put(s.version)


def _collector(home, go, rounds, journal=None):
    go.wait()
    lib = Library.open(home, journal=journal)
    for _ in range(rounds):
        lib.gc()
        time.sleep(0.005)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_eight_writers_at_once(home, journal):
    """8 processes open a fresh library together and each add 5 new skills and 5 versions of one
    shared name, while a ninth runs `gc` in a loop — with WAL (one host) and with the
    rollback journal a home on a network file system gets."""
    ctx = _context()
    go, versions = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(home), k, go, versions, journal)) for k in range(8)]
    procs.append(ctx.Process(target=_collector, args=(str(home), go, 40, journal)))
    for p in procs:
        p.start()
    go.set()
    reported = [versions.get(timeout=120) for _ in range(40)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(reported) == list(range(1, 41))

    with Library.open(home, journal=journal) as lib:
        assert lib.journal == journal
        assert lib.conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
        rows = lib.list()
        names = [r.name for r in rows]
        assert len(names) == len(set(names)) == 41
        expected = {f"w{k}-s{j}" for k in range(8) for j in range(5)}
        assert set(names) == expected | {"shared"}
        for r in rows:
            if r.name != "shared":
                assert [v.version for v in lib.versions(r.name)] == [1]
                k, j = (int(x[1:]) for x in r.name.split("-"))
                expected_w = torch.full((64,), float(k * 10 + j))
                assert torch.equal(lib.get(r.name).tensors["w"], expected_w)
        shared = lib.versions("shared")
        assert [r.version for r in shared] == list(range(1, 41))
        values = {lib.get(f"shared@{r.version}").tensors["w"][0].item() for r in shared}
        assert values == {k * 10 + j + 0.5 for k in range(8) for j in range(5)}
        assert lib.verify() == []
        assert referenced(lib) <= blob_files(home)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_gc_keeps_tmp_of_live_writers(home):
    with Library.open(home) as lib:
        live = home / "tmp" / f"{os.getpid()}-abc.part"
        dead = home / "tmp" / "999999999-abc.part"
        odd = home / "tmp" / "junk"
        for p in (live, dead, odd):
            p.write_bytes(b"x")
        assert lib.gc()["left"] == ["tmp/junk"]  # not named like skillbank's own: not ours
        assert sorted(p.name for p in (home / "tmp").iterdir()) == [live.name, "junk"]
