"""`ssd-np weights fetch` against a loopback HTTP server: success, hash mismatch, truncation, server error,
no network; and archive export errors. Nothing partial may be left at the destination."""
import hashlib
import http.server
import io
import socket
import tarfile
import threading

import numpy as np
import pytest

from ssd_np.weights.checkpoint import write_checkpoint
from ssd_np.weights.fetch import FetchError, export_archive, fetch
from ssd_np.weights.hdf5 import default_weights_path
from ssd_np.weights.standin import standin_weights
from ssd_np.weights.hdf5 import WeightsError, load_weights


class Server:
    """Serves `routes[path] = (status, body, announced_length)` on 127.0.0.1."""

    def __init__(self):
        self.routes = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body, length = routes.get(self.path, (404, b"", 0))
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path, body, status=200, length=None):
        self.routes[path] = (status, body, len(body) if length is None else length)
        return self.url + path


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def standin_archive(tmp_path_factory):
    """A release-shaped archive holding a stand-in checkpoint (not the release: its sha256 differs)."""
    folder = tmp_path_factory.mktemp("archive")
    prefix = folder / "model.ckpt"
    write_checkpoint(prefix, {**standin_weights(1), "global_step": np.int64(0)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for suffix in ("index", "data-00000-of-00001"):
            tar.add(f"{prefix}.{suffix}", arcname=f"ssd_mobilenet_v2_coco_2018_03_29/model.ckpt.{suffix}")
    return buffer.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_fetch_success(server, standin_archive, tmp_path):
    url = server.serve("/release.tar.gz", standin_archive)
    progress = io.StringIO()
    out = fetch(tmp_path / "w.h5", url=url, sha256=sha(standin_archive), progress=progress)
    _, attrs = load_weights(out)
    assert attrs["source"] == f"archive sha256 {sha(standin_archive)}" and attrs["genuine"] is False
    assert "100.0 %" in progress.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"]


@pytest.mark.parametrize("case, message", [
    ("hash", "has sha256 .* expected 0{64}"),
    ("truncated", "(truncated|broke off)"),
    ("server error", "HTTP 500"),
])
def test_fetch_failures_leave_nothing(server, tmp_path, case, message):
    body = b"x" * 5000
    if case == "hash":
        url, expected = server.serve("/a", body), "0" * 64
    elif case == "truncated":
        url, expected = server.serve("/b", body, length=10_000), sha(body)
    else:
        url, expected = server.serve("/c", b"oops", status=500), sha(body)
    with pytest.raises(FetchError, match=message):
        fetch(tmp_path / "w.h5", url=url, sha256=expected, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_network_says_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="ssd-np weights export --archive"):
        fetch(tmp_path / "w.h5", url=f"http://127.0.0.1:{port}/x.tar.gz", sha256="0" * 64, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_export_archive_refuses_what_is_not_the_release(standin_archive, tmp_path):
    archive = tmp_path / "ssd_mobilenet_v2_coco_2018_03_29.tar.gz"
    archive.write_bytes(standin_archive)
    with pytest.raises(WeightsError, match="not the release archive"):
        export_archive(archive, tmp_path / "out" / "w.h5")
    assert not (tmp_path / "out").exists()


def test_export_archive_without_checkpoint(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("ssd_mobilenet_v2_coco_2018_03_29/pipeline.config")
        tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(WeightsError, match="archive has no model.ckpt"):
        export_archive(archive, tmp_path / "w.h5", expected_sha256=sha(buffer.getvalue()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not gzip")
    with pytest.raises(WeightsError, match="cannot read the archive"):
        export_archive(junk, tmp_path / "w.h5", expected_sha256=sha(b"definitely not gzip"))


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_NP_WEIGHTS", str(tmp_path / "mine.h5"))
    assert default_weights_path() == tmp_path / "mine.h5"
    monkeypatch.delenv("SSD_NP_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_weights_path() == tmp_path / "ssd_np" / "ssd_mobilenet_v2_coco_2018_03_29.h5"
