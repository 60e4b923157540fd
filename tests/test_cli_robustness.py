"""The CLI around bad situations rather than bad files: output permissions (umask), outputs that cannot be
written (disk full, read-only, a folder in the way), a closed stdout pipe, SIGTERM and Ctrl-C during a write, and
text the terminal cannot encode. In-process through `ssd_np.cli.main.main` where possible; subprocesses only for
signals, pipes and the interpreter's own stream encoding."""
import errno
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from conftest import DATA, ROOT
from ssd_np import atomic
from ssd_np.atomic import atomic_path, current_umask, write_atomic
from ssd_np.cli.main import main
from ssd_np.verify import trace
from ssd_np.weights.checkpoint import write_checkpoint

IMAGE = DATA / "images" / "tiny_37x23.png"
GT = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "person"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]}


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def one_error(err, *fragments):
    assert len(err) == 1 and err[0].startswith("ssd-np: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def no_hidden_files(folder):
    assert [p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith(".")] == []


# --- permissions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_files_get_what_open_would_give(tmp_path, umask, mask, monkeypatch):
    umask(mask)
    assert current_umask() == mask and os.umask(mask) == mask  # read without changing it
    write_atomic(tmp_path / "new.json", b"{}")
    with open(tmp_path / "plain.json", "w"):
        pass
    assert mode(tmp_path / "new.json") == mode(tmp_path / "plain.json") == 0o666 & ~mask
    monkeypatch.setattr(atomic, "open", lambda *a: (_ for _ in ()).throw(OSError("no /proc")), raising=False)
    assert current_umask() == mask and os.umask(mask) == mask  # the fallback, too


@pytest.mark.parametrize("existing", [0o644, 0o600, 0o640, 0o664])
def test_replacing_a_file_keeps_its_mode(tmp_path, umask, existing):
    umask(0o077)
    for name in ("atomic", "plain"):
        (tmp_path / name).write_bytes(b"old")
        os.chmod(tmp_path / name, existing)
    write_atomic(tmp_path / "atomic", b"new")
    with open(tmp_path / "plain", "w") as f:
        f.write("new")
    assert mode(tmp_path / "atomic") == mode(tmp_path / "plain") == existing
    assert (tmp_path / "atomic").read_bytes() == b"new"


def test_cli_outputs_respect_the_umask(tmp_path, umask, run_main, standin_h5, monkeypatch):
    umask(0o022)
    out, draw = tmp_path / "json", tmp_path / "draw"
    assert run_main("detect", IMAGE, "--json-dir", out, "--draw", draw, "--weights", standin_h5)[0] == 0
    assert mode(out / "tiny_37x23.json") == mode(draw / "tiny_37x23.png") == 0o644
    coco = DATA / "images" / "000000000802.jpg"
    assert run_main("detect", coco, "--format", "coco", "--json-dir", out, "--weights", standin_h5)[0] == 0
    assert mode(out / "results.json") == 0o644
    monkeypatch.setattr(trace, "trace_image", lambda weights, image, openvino=False: {"x": np.zeros(3, np.float32)})
    assert run_main("trace", IMAGE, "--out", tmp_path / "t.npz", "--weights", standin_h5)[0] == 0
    assert mode(tmp_path / "t.npz") == 0o644
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    (tmp_path / "r.json").write_text("[]")
    assert run_main("eval", "--annotations", gt, "--results", tmp_path / "r.json", "--json", tmp_path / "m.json")[0] == 0
    assert mode(tmp_path / "m.json") == 0o644
    write_checkpoint(tmp_path / "ckpt" / "model.ckpt", {"a": np.ones(3, np.float32)})
    assert {p.name: mode(p) for p in (tmp_path / "ckpt").iterdir()} == \
        {"model.ckpt.index": 0o644, "model.ckpt.data-00000-of-00001": 0o644}
    assert mode(standin_h5) == 0o666 & ~os.umask(0o022)  # written by write_h5 under this session's umask


# --- outputs that cannot be written ---------------------------------------------------------------------------


def _gt_and_results(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    results = tmp_path / "r.json"
    results.write_text("[]")
    return gt, results


def test_a_folder_as_output_file_is_named(tmp_path, run_main):
    gt, results = _gt_and_results(tmp_path)
    (tmp_path / "m.json").mkdir()
    status, _, err = run_main("eval", "--annotations", gt, "--results", results, "--json", tmp_path / "m.json")
    assert status == 2
    one_error(err, f"{tmp_path / 'm.json'}: is a folder, not a file")
    no_hidden_files(tmp_path)


def test_unwritable_output_names_the_users_path(tmp_path, run_main, monkeypatch):
    """EACCES / EROFS while creating the temporary file: the message names m.json, not `.m.json.XXXX.partial`."""
    gt, results = _gt_and_results(tmp_path)

    def refuse(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    status, _, err = run_main("eval", "--annotations", gt, "--results", results, "--json", tmp_path / "m.json")
    assert status == 2
    assert err == [f"ssd-np: error: {tmp_path / 'm.json'}: Read-only file system"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_names_the_users_path(tmp_path, run_main):
    gt, results = _gt_and_results(tmp_path)
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    status, _, err = run_main("eval", "--annotations", gt, "--results", results, "--json", tmp_path / "ro" / "m.json")
    assert status == 2
    assert err == [f"ssd-np: error: {tmp_path / 'ro' / 'm.json'}: Permission denied"]


@pytest.fixture
def disk_full(monkeypatch):
    """Path.write_bytes writes half its data, then fails with ENOSPC naming the (temporary) file, as a full disk."""
    def write_half(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_half)


def test_disk_full_keeps_the_coco_results(tmp_path, run_main, standin_h5, monkeypatch, disk_full):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / "results.json", "w") as f:
        f.write("[]\n")  # an earlier run's
    image = tmp_path / "000000000802.jpg"
    with open(image, "wb") as f:
        f.write((DATA / "images" / "000000000802.jpg").read_bytes())
    status, _, err = run_main("detect", image, "--format", "coco", "--json-dir", out, "--weights", standin_h5)
    assert status == 2
    errors = [line for line in err if line.startswith("ssd-np: error:")]
    assert len(errors) == 1 and "Traceback" not in "".join(err)
    assert errors[0].startswith(f"ssd-np: error: {out / 'results.json'}: No space left on device; the COCO results "
                                f"of 1 images (")
    assert errors[0].endswith("detections) were not written (a file already there is unchanged); free some space or "
                              "choose another place, and run again")
    assert (out / "results.json").read_text() == "[]\n" and sorted(os.listdir(out)) == ["results.json"]


def test_disk_full_per_image_output(tmp_path, run_main, standin_h5, disk_full):
    status, _, err = run_main("detect", IMAGE, "--json-dir", tmp_path, "--weights", standin_h5)
    assert status == 1
    assert f"ssd-np: error: {IMAGE}: cannot write its output ({tmp_path / 'tiny_37x23.json'}: No space left on " \
           f"device)" in err
    assert "None" not in "".join(err) and os.listdir(tmp_path) == []


def test_hdf5_style_error_gets_its_errno_and_the_users_path(tmp_path):
    """h5py reports a failed write as OSError(None) whose text holds `errno = 28`."""
    target = tmp_path / "w.h5"
    with pytest.raises(OSError) as e:
        with atomic_path(target) as tmp:
            raise OSError(f"Can't write data (file write failed: time = Sun Dec  6 04:00:00 2026, filename = "
                          f"'{tmp}', file descriptor = 5, errno = 28, error message = 'No space left on device', "
                          f"buf = 0x1, total write size = 8, bytes this sub-write = 8, bytes actually written = "
                          f"18446744073709551615, offset = 0)")
    assert (e.value.errno, e.value.strerror, e.value.filename) == (errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    assert os.listdir(tmp_path) == []


# --- streams, pipes and signals -------------------------------------------------------------------------------


def test_unencodable_names_are_escaped_on_stdout(tmp_path, monkeypatch, standin_h5):
    """PYTHONIOENCODING=ascii, in-process: stdout and stderr that cannot encode a name print it escaped."""
    image = tmp_path / "naïve.png"
    image.write_bytes(IMAGE.read_bytes())
    (tmp_path / "ünreadable.png").write_bytes(b"not an image")
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="ascii"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="ascii"))
    assert main(["detect", str(image), str(tmp_path / "ünreadable.png"), "--weights", str(standin_h5)]) == 1
    sys.stdout.flush(), sys.stderr.flush()
    assert out.getvalue().decode("ascii").startswith(f"{tmp_path}/na\\xefve.png: ")
    assert f"ssd-np: error: {tmp_path}/\\xfcnreadable.png: not an image file" in err.getvalue().decode("ascii")


def _cli(*args, **kwargs):
    env = {**os.environ, "SSD_NP_WEIGHTS": "/nonexistent/weights.h5", **kwargs.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "ssd_np.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_ascii_terminal_error_line(tmp_path):
    process = _cli("eval", "--annotations", tmp_path / "ännotations.json", "--results", tmp_path / "r.json",
                   env={"PYTHONIOENCODING": "ascii"})
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.decode("ascii").splitlines() == [
        f"ssd-np: error: cannot read the annotations {tmp_path}/\\xe4nnotations.json: No such file or directory"]


def test_closed_stdout_ends_quietly(standin_h5):
    """`ssd-np detect ... | head -1`: exit 141 (128 + SIGPIPE) and nothing on stderr about the pipe."""
    images = sorted((DATA / "images").glob("*.png"))
    process = _cli("detect", *images, "--weights", standin_h5, "--jobs", "1")
    first = process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    err = err.decode()
    assert first.decode().startswith(f"{images[0]}: ")
    assert process.returncode == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err
    assert [line for line in err.splitlines() if "error" in line] == []


SLOW_SAVE = """
import sys, time
import numpy as np
from ssd_np.cli.main import main
from ssd_np.verify import trace
# the reference model's 20 s are not what this test is about: a 1.2 MB stand-in trace
trace.trace_image = lambda weights, image, openvino=False: {
    "x": np.random.default_rng(0).standard_normal(300_000, np.float32)}
real = np.lib.format.write_array
def slow(fp, array, *args, **kwargs):  # every member written, then a long pause inside the atomic block
    real(fp, array, *args, **kwargs)
    if array.dtype.kind == "U":  # __meta__/json, the last member
        print("saved", flush=True)
        time.sleep(60)
np.lib.format.write_array = slow
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, status, line", [(signal.SIGTERM, 143, "ssd-np: terminated"),
                                                  (signal.SIGINT, 130, "ssd-np: interrupted")])
def test_signal_during_trace_leaves_no_partial_file(tmp_path, standin_h5, signum, status, line):
    out = tmp_path / "trace.npz"
    process = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, "trace", str(IMAGE), "--out", str(out),
                                "--weights", str(standin_h5)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"saved\n"
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial.npz")]
    assert len(partial) == 1 and partial[0].stat().st_size > 100_000  # the hidden temporary file, whole
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status
    assert err.decode().splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_a_checkpoint(tmp_path, disk_full):
    """The nested atomic writes of write_checkpoint: the index fails, the data file is not left behind."""
    with pytest.raises(OSError) as e:
        write_checkpoint(tmp_path / "model.ckpt", {"a": np.ones(3, np.float32)})
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(tmp_path / "model.ckpt.index"))
    assert os.listdir(tmp_path) == []


def test_errors_about_other_files_keep_their_name(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        with atomic_path(tmp_path / "out.json"):
            open(tmp_path / "missing-input.json")
    assert e.value.filename == str(tmp_path / "missing-input.json") and os.listdir(tmp_path) == []
