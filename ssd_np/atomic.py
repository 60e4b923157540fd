"""Atomic file output: a file the project writes is either as it was or complete, never half-written.

The data goes to a temporary file in the destination's folder (same file system), which then replaces the
destination with `os.replace`; if writing fails or is interrupted (an exception, Ctrl-C, or SIGTERM turned into
an exception by `ssd-np`), the temporary file is removed.

Permissions are those a plain `open(path, "w")` gives: a new file gets `0o666 & ~umask` (e.g. 0644 under the
usual umask 022), and a file that already exists keeps its permission bits, as `open` truncating it would keep
them (a 0600 file stays 0600, a 0664 one stays 0664). Only the owner can differ: the replacement belongs to
whoever writes it.

Errors name the destination, never the hidden temporary file: an OSError about the temporary file (or about no
file) becomes an OSError of the same errno whose `filename` is `path` (an HDF5 library error that only states
"errno = 28" in its text gets that errno); errors about other files are left as they are.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc/self/status, Linux >= 4.7);
    elsewhere set and restored at once under a lock (the only way POSIX offers)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def output_mode(path: Path) -> int:
    """The permission bits `open(path, "w")` would leave `path` with: its own if it exists, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _naming(e: OSError, path: Path) -> OSError:
    """`e` as an OSError of the same errno naming `path` (the user's file) instead of the temporary file."""
    code = e.errno
    if code is None:  # h5py: "... errno = 28, error message = 'No space left on device' ..."
        match = re.search(r"errno = (\d+)", str(e))
        code = int(match.group(1)) if match else None
    reason = os.strerror(code) if code else (e.strerror or (str(e).splitlines() or [type(e).__name__])[0])
    return OSError(code, reason, str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[Path]:
    """A temporary path beside `path` to write to: it replaces `path` when the block ends normally and is
    removed when the block raises. `suffix` ends the temporary name (e.g. ".partial.npz" for np.savez)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file; give a file name", str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        try:
            os.fchmod(fd, output_mode(path))
        finally:
            os.close(fd)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # errors naming another file stay as they are
            raise _naming(e, path) from None
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
