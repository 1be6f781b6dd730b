"""Run the real CLI entry point in-process (a traceback escapes as an exception, so a test
fails on it) and photograph a home to prove nothing was lost."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path


def cli(*args) -> tuple[int, str, str]:
    """``skillbank ARGS`` through ``skillbank.cli.main``: (exit code, stdout, stderr)."""
    from skillbank.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["skillbank", *map(str, args)]
    debug = os.environ.get("SKILLBANK_DEBUG")
    os.environ["SKILLBANK_DEBUG"] = "1"  # a bug escapes as its traceback and fails the test
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
        if debug is None:
            os.environ.pop("SKILLBANK_DEBUG")
        else:
            os.environ["SKILLBANK_DEBUG"] = debug
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str) -> bool:
    """Exit 2 with exactly one line on stderr, which is an error and no traceback."""
    return code == 2 and err.count("\n") == 1 and err.startswith("error: ") \
        and "Traceback" not in err


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """``{relative path: (size, sha256)}`` of every regular file under ``root`` (links are
    recorded by their target's text, never followed)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = (0, "link:" + os.readlink(path))
            else:
                data = path.read_bytes()
                out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def lost(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    """Files of ``before`` that are gone or changed in ``after`` (new files, such as SQLite's
    own ``-wal``/``-shm``, are not losses; nor is a change of ``-shm``, SQLite's shared-memory
    index, which every connection rewrites and which holds no data)."""
    return sorted(k for k, v in before.items() if after.get(k) != v and not k.endswith("-shm"))


def unshare_works() -> bool:
    """Whether this process may make a private mount namespace (root, with ``unshare``)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def in_mount_namespace(mounts: str, script: str, timeout: float = 300):
    """Run the Python ``script`` after the shell commands ``mounts`` in a private mount
    namespace (nothing outside sees the mounts) and return what it printed after
    ``RESULT``, parsed as JSON."""
    import json
    import subprocess

    shell = f"{mounts} && exec {sys.executable} -c \"$SCRIPT\""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True,
                          env={**os.environ, "SCRIPT": script}, timeout=timeout)
    assert "RESULT" in proc.stdout, proc.stderr[-2000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])
