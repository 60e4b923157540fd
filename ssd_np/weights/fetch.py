"""Getting the genuine weights: download the official release archive, verify it, export it to HDF5.

`ssd-np weights fetch` = `download` (sha256-checked, atomic) + `export_archive` (each tensor's CRC32C checked
against the manifest) into `default_weights_path()`. Nothing partial is ever left at the destination: every
file is written under a temporary name in the destination folder and renamed into place when complete.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from ssd_np.atomic import atomic_path
from ssd_np.weights.checkpoint import read_checkpoint
from ssd_np.weights.hdf5 import MODEL_NAME, WeightsError, default_weights_path, release_sha256, require_genuine, sha256_file, write_h5

ARCHIVE_NAME = f"{MODEL_NAME}.tar.gz"
RELEASE_URL = f"http://download.tensorflow.org/models/object_detection/{ARCHIVE_NAME}"


class FetchError(RuntimeError):
    """The download could not be completed or verified."""


def _progress(done: int, total: int | None, out: TextIO) -> None:
    if total:
        out.write(f"\r  {done / 1e6:7.1f} / {total / 1e6:.1f} MB  ({100 * done / total:5.1f} %)")
    else:
        out.write(f"\r  {done / 1e6:7.1f} MB")
    out.flush()


def download(url: str, sha256: str, dest: str | os.PathLike, *, timeout: float = 30.0,
             progress: TextIO | None = sys.stderr) -> Path:
    """Download `url` to `dest`, verifying its length and sha256; `dest` appears only when verified."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    with atomic_path(dest) as tmp:
        try:
            with open(tmp, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers["Content-Length"]) if response.headers["Content-Length"] else None
                while block := response.read(1 << 20):
                    f.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        _progress(done, total, progress)
        except urllib.error.HTTPError as e:
            raise FetchError(f"download of {url} failed: HTTP {e.code} {e.reason}; try again later") from None
        except http.client.HTTPException as e:
            raise FetchError(f"download of {url} broke off after {done} bytes ({type(e).__name__}); "
                             f"try again") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise FetchError(
                f"cannot download {url}: {reason}. Without network access, obtain {ARCHIVE_NAME} by other means "
                f"and run `ssd-np weights export --archive {ARCHIVE_NAME} --out FILE.h5`") from None
        finally:
            if progress and done:
                progress.write("\n")
        if total is not None and done != total:
            raise FetchError(f"download of {url} truncated: got {done} of {total} bytes; try again")
        if digest.hexdigest() != sha256:
            raise FetchError(f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}; "
                             f"the file is corrupt or not the release archive; try again")
    return dest


def _extract_checkpoint(archive: tarfile.TarFile, folder: Path) -> Path:
    """Extract `*/model.ckpt.index` and `*/model.ckpt.data-00000-of-00001` into `folder`; return the prefix."""
    wanted = {"model.ckpt.index", "model.ckpt.data-00000-of-00001"}
    found = {}
    for member in archive.getmembers():
        base = member.name.rsplit("/", 1)[-1]
        if base in wanted and member.isfile():
            found[base] = member
    if set(found) != wanted:
        raise WeightsError(f"archive has no {sorted(wanted - set(found))[0]}; is it {ARCHIVE_NAME}?")
    for base, member in found.items():
        with archive.extractfile(member) as src, open(folder / base, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return folder / "model.ckpt"


def export_archive(archive_path: str | os.PathLike, out: str | os.PathLike,
                   *, expected_sha256: str | None = None) -> bool:
    """Export the release archive's checkpoint to the HDF5 weights file `out`. Returns `genuine`.

    The archive must have the release's sha256 (`expected_sha256` overrides it, for tests only); with the
    release hash every tensor must also match the manifest's CRC32C.
    """
    release = release_sha256(ARCHIVE_NAME)
    expected = expected_sha256 or release
    actual = sha256_file(archive_path)
    if actual != expected:
        raise WeightsError(f"{archive_path} has sha256 {actual}, but {ARCHIVE_NAME} has {expected}: "
                           f"not the release archive (or a corrupt copy)")
    with tempfile.TemporaryDirectory(prefix="ssd_np-archive-") as folder:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                prefix = _extract_checkpoint(archive, Path(folder))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise WeightsError(f"{archive_path}: cannot read the archive ({e})") from None
        tensors = read_checkpoint(prefix)
        if expected == release:
            require_genuine(tensors, f"archive {archive_path}")
        return write_h5(tensors, out, f"release archive sha256 {actual}" if expected == release
                        else f"archive sha256 {actual}")


def fetch(out: str | os.PathLike | None = None, *, url: str = RELEASE_URL, sha256: str | None = None,
          progress: TextIO | None = sys.stderr) -> Path:
    """Download the release archive, verify it and export its weights to `out` (default location if None).

    `url` and `sha256` are overridable for tests only.
    """
    out = Path(out) if out else default_weights_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ssd_np-fetch-", dir=out.parent) as folder:
        archive = download(url, sha256 or release_sha256(ARCHIVE_NAME), Path(folder) / ARCHIVE_NAME,
                           progress=progress)
        export_archive(archive, out, expected_sha256=sha256)
    return out
