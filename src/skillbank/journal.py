"""The catalog's SQLite journal mode: WAL on a local disk, the rollback journal where a
library home may be shared between hosts (a network file system), or as asked.

SQLite's WAL mode needs every process on one host (its index lives in shared memory); the
rollback journal relies on POSIX file locks, which network file systems implement across
hosts when configured as their docs say.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .skill import SkillError

# File systems a home may share between hosts.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "lustre", "gpfs", "beegfs", "ceph",
    "glusterfs", "ocfs2", "gfs2", "fuse.sshfs", "fuse.ceph", "fuse.glusterfs", "fuse.s3fs",
})
JOURNAL_MODES = ("wal", "delete")


def filesystem_type(path: str | Path, mounts: str) -> str | None:
    """The file system type of ``path`` from the text of ``/proc/mounts``: the entry with
    the longest mount point that contains the path (octal escapes such as ``\\040``
    decoded), or None if no entry matches."""
    path = Path(path)
    best, fstype = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        if (path == Path(point) or Path(point) in path.parents) and len(point) > best:
            best, fstype = len(point), fields[2]
    return fstype


def journal_mode(home: Path, requested: str | None = None) -> str:
    """The catalog's SQLite journal mode: ``requested``, else ``$SKILLBANK_JOURNAL``, else
    ``delete`` (rollback journal) when the home is on a network file system (NFS, CIFS,
    Lustre, ...: :data:`NETWORK_FILESYSTEMS`, read from ``/proc/mounts``) and ``wal``
    otherwise. Every process opening one home must agree, which they do when they see the
    same mount."""
    mode = (requested or os.environ.get("SKILLBANK_JOURNAL") or "").lower()
    if mode:
        if mode not in JOURNAL_MODES:
            raise SkillError(f"journal mode must be one of {', '.join(JOURNAL_MODES)}, got {mode!r}")
        return mode
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return "wal"
    fstype = filesystem_type(home.resolve(), mounts)
    return "delete" if fstype in NETWORK_FILESYSTEMS else "wal"
