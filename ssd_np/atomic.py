"""Atomic file output: a file the project writes is either as it was or complete, never half-written.

The data goes to a temporary file in the destination's folder (same file system), which then replaces the
destination with `os.replace`; if writing fails or is interrupted, the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[Path]:
    """A temporary path beside `path` to write to: it replaces `path` when the block ends normally and is
    removed when the block raises. `suffix` ends the temporary name (e.g. ".partial.npz" for np.savez)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
