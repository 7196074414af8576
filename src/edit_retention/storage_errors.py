"""One-line messages for a job that cannot write: a full disk, a read-only or unwritable
folder (Python's OSError, or the Rust "os error N" of safetensors and tokenizers).

Writers go through ``io.atomic_path``/``atomic_dir``, so such a failure leaves no
half-written file under a final name; the message says where and what to do.
"""
from __future__ import annotations

import errno
import re

PROBLEMS = {
    errno.ENOSPC: ("no space left on the device", "free space there, or write the data elsewhere "
                   "(a symlink for data/, TMPDIR for temporary files)"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota, or write the data elsewhere"),
    errno.EROFS: ("read-only file system", "run the study from a writable checkout"),
    errno.EACCES: ("permission denied", "make the folder writable for this user (or run as its owner)"),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user (or run as its owner)"),
}
_RUST = re.compile(r"os error (\d+)|code: (\d+)")


def storage_problem(cmd: str, e: BaseException) -> str | None:
    """The message for a storage failure ``e`` of stage ``cmd``, or None for anything else."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None:
        m = _RUST.search(str(e))
        code = int(m[1] or m[2]) if m else None
    if code not in PROBLEMS:
        return None
    what, todo = PROBLEMS[code]
    path = getattr(e, "filename", None)
    where = f" at {path}" if path else ""
    return (f"{cmd}: {what}{where} ({type(e).__name__}: {' '.join(str(e).split())}); {todo}, then rerun: "
            "nothing half-written was kept")
