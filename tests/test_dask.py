"""`--scheduler`: `ssd-np detect` and `ssd-np eval` on a Dask cluster give a serial run's files, byte for byte.

The cluster is a LocalCluster of 2 worker processes on 127.0.0.1 (started by `cli/distributed.local_cluster`,
closed when the module ends), reached by the real CLI in a subprocess through its address. The tests skip
without the extra `ssd_np[dask]`, except the one that checks the message naming it.
"""
import builtins
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from conftest import DATA
from ssd_np.cli.errors import CliError
from ssd_np.cli.main import main
from ssd_np.cli.outputs import json_bytes
from test_detect_cli import SUMMARY, cli, files, in_a_terminal, stderr_lines, weights, weights_file  # noqa: F401

IMAGES = DATA / "images"
COCO_NAMED = ["000000000802.jpg", "000000037777.jpg", "000000117645.jpg", "000000122745.jpg"]
OTHERS = ["tests/data/images/tiny_37x23.png"]  # relative to ROOT, the CLI's working folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of four COCO-named images and a broken one (its failure must be reported as in a serial run)."""
    folder = tmp_path_factory.mktemp("images")
    for name in COCO_NAMED:
        shutil.copy(IMAGES / name, folder / name)
    (folder / "000000000001.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return folder


ENVIRONMENT = dict(os.environ)  # before any cluster


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    from ssd_np.cli.distributed import local_cluster

    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        yield cluster.scheduler_address, client


def test_a_local_cluster_leaves_this_process_environment_alone(cluster):
    # Dask's nannies write OMP/MKL/OPENBLAS_NUM_THREADS=1 into the environment of the process they run in; every
    # later subprocess then ran OpenBLAS on one thread (the reference's products rounded differently: a page
    # written by `ssd-np explain` no longer matched one computed here)
    from ssd_np.cli.distributed import MALLOC_VARIABLE, THREAD_VARIABLES

    for name in (MALLOC_VARIABLE, *THREAD_VARIABLES):
        assert os.environ.get(name) == ENVIRONMENT.get(name), name


def detect_runs(out, images, weights_file, *extra):
    """The two runs compared: TF JSON + drawings, and COCO results; returns their stderr error lines."""
    tf = cli("detect", images, *OTHERS, "--weights", weights_file, "--json-dir", out / "json", "--draw", out / "draw",
             *extra)
    coco = cli("detect", images, "--weights", weights_file, "--format", "coco", "--json-dir", out / "coco", *extra)
    assert tf.returncode == coco.returncode == 1, tf.stderr + coco.stderr  # the broken image
    return [sorted(line for line in stderr_lines(run) if line.startswith("ssd-np: error:")) for run in (tf, coco)]


@pytest.fixture(scope="module")
def serial(tmp_path_factory, images, weights_file):
    """The serial run: one image at a time on all of numba's threads (the workers run one thread each)."""
    out = tmp_path_factory.mktemp("serial")
    return out, detect_runs(out, images, weights_file, "--jobs", "1")


def written(folder) -> list[str]:
    """Every file under `folder` (hidden ones included: a temporary file left would show)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_files(a, b):
    """Both trees hold the same files, byte for byte."""
    assert written(a) == written(b)
    for name in written(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_two_workers_write_the_serial_files(tmp_path, cluster, serial, images, weights_file):
    out, errors = serial
    assert len(files(out / "json")) == len(files(out / "draw")) == len(COCO_NAMED) + len(OTHERS)
    assert len(json.loads((out / "coco" / "results.json").read_bytes())) > len(COCO_NAMED)
    assert errors[0] == errors[1] and len(errors[0]) == 1 and "000000000001.jpg" in errors[0][0]
    assert detect_runs(tmp_path, images, weights_file, "--scheduler", cluster[0]) == errors
    assert_same_files(out, tmp_path)


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_a_worker_killed_mid_run(tmp_path, cluster, serial, images, weights_file, allowed_failures):
    """A worker process exits in the middle of its second task. Dask runs the task again on the other worker
    (or on the one its nanny restarts): the files are exactly the serial run's, with nothing else. Told to give
    up at once (allowed-failures 0), the run reports the images of the lost worker's tasks as not processed,
    writes the others, and `--resume` completes them."""
    from distributed.diagnostics.plugin import WorkerPlugin

    marker = tmp_path / "killed"

    class ExitOnce(WorkerPlugin):
        name = "ssd-np-exit-once"

        def setup(self, worker):
            self.started = 0

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and "_run_chunk" in str(key):
                self.started += 1
                if self.started == 2:
                    try:  # the first worker there claims the marker: one death per test
                        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                    except FileExistsError:
                        return
                    threading.Timer(0.05, os._exit, (1,)).start()

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    def allow(dask_scheduler, failures):
        dask_scheduler.allowed_failures = failures

    address, client = cluster
    workers = set(client.nthreads())
    client.run_on_scheduler(allow, failures=allowed_failures)
    client.register_plugin(ExitOnce())
    run = ("detect", images, *OTHERS, "--weights", weights_file, "--json-dir", tmp_path / "out" / "json",
           "--draw", tmp_path / "out" / "draw", "--scheduler", address)
    try:
        result = cli(*run)
    finally:
        client.unregister_worker_plugin(ExitOnce.name)
        client.run_on_scheduler(allow, failures=3)
    assert marker.exists() and set(client.nthreads()) != workers  # one worker process was lost
    errors = [line for line in stderr_lines(result) if line.startswith("ssd-np: error:")]
    assert result.returncode == 1
    reference = tmp_path / "reference"
    shutil.copytree(serial[0] / "json", reference / "json")
    shutil.copytree(serial[0] / "draw", reference / "draw")
    if allowed_failures:
        assert errors == serial[1][0]
    else:
        # the task running and any queued on the lost worker
        lost = [line for line in errors if line.endswith(": not processed: the Dask workers running it died (1 "
                                                         "times); run again with --resume")]
        stems = {Path(line.removeprefix("ssd-np: error: ").split(": ")[0]).stem for line in lost}
        assert lost and sorted(errors) == sorted(lost + [line for line in serial[1][0]
                                                         if not any(stem in line for stem in stems)])
        assert written(tmp_path / "out") == [name for name in written(reference) if Path(name).stem not in stems]
        result = cli(*run, "--resume")
        assert result.returncode == 1 and ", 1 failed, " in result.stderr
    assert_same_files(reference, tmp_path / "out")


def test_resume_skips_what_exists(tmp_path, cluster, serial, images, weights_file):
    out = tmp_path / "out"
    shutil.copytree(serial[0], out)
    for stale in ("json/000000000802.json", "draw/000000037777.png"):
        (out / stale).unlink()
    (out / "json" / "tiny_37x23.json").write_text("kept")  # proves the existing files are not rewritten
    # 117645 counts as done with the row found (a stand-in row here); 999 is not in the run, its row is dropped
    found = {"image_id": 117645, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
    (out / "coco" / "results.json").write_bytes(json_bytes([found, {**found, "image_id": 999}]))
    errors = detect_runs(out, images, weights_file, "--scheduler", cluster[0], "--resume")
    assert errors == serial[1]
    assert (out / "json" / "tiny_37x23.json").read_text() == "kept"
    (out / "json" / "tiny_37x23.json").write_bytes((serial[0] / "json" / "tiny_37x23.json").read_bytes())
    rows = json.loads((serial[0] / "coco" / "results.json").read_bytes())
    expected = [r for r in rows if r["image_id"] < 117645] + [found] + [r for r in rows if r["image_id"] > 117645]
    assert (out / "coco" / "results.json").read_bytes() == json_bytes(expected)
    (out / "coco" / "results.json").write_bytes((serial[0] / "coco" / "results.json").read_bytes())
    assert_same_files(serial[0], out)


def test_resume_serial_counts(tmp_path, serial, images, weights_file):
    out = tmp_path / "json"
    shutil.copytree(serial[0] / "json", out)
    (out / "000000000802.json").unlink()
    result = cli("detect", images, *OTHERS, "--weights", weights_file, "--json-dir", out, "--resume")
    total = len(COCO_NAMED) + len(OTHERS) + 1
    assert stderr_lines(result)[1] == f"ssd-np: --resume: {total - 2} of {total} images already have their " \
                                      f"outputs, skipped"
    assert stderr_lines(result)[-1].startswith("ssd-np: 2 images, 1 failed, ")
    assert_same_files(serial[0] / "json", out)


def test_text_and_progress_bar_in_a_terminal(cluster, images, weights_file):
    """Without output folders, the detections printed on stdout are the serial run's, in input order; the
    progress bar advances as the tasks finish."""
    serial_run = cli("detect", images, *OTHERS, "--weights", weights_file)
    status, stdout, stderr = in_a_terminal("detect", images, *OTHERS, "--weights", weights_file,
                                           "--scheduler", cluster[0])
    assert status == serial_run.returncode == 1 and stdout == serial_run.stdout and stdout.count(": ") >= 5
    total = len(COCO_NAMED) + len(OTHERS) + 1
    assert "\x1b[K" in stderr and all(f"{done}/{total} [" in stderr for done in range(1, total + 1))
    assert SUMMARY.match(stderr.split("\r\x1b[K")[-1].strip().splitlines()[-1])


def test_eval_on_the_cluster(tmp_path, cluster, weights_file):
    runs = [cli("eval", "--annotations", DATA / "instances_val2017_dev.json", "--images", IMAGES, "--max-images", 4,
                "--weights", weights_file, "--results", tmp_path / f"{name}.json", *extra)
            for name, extra in (("serial", ()), ("cluster", ("--scheduler", cluster[0])))]
    assert [run.returncode for run in runs] == [0, 0], runs[1].stderr
    assert runs[0].stdout == runs[1].stdout and "Average Precision" in runs[0].stdout
    assert (tmp_path / "serial.json").read_bytes() == (tmp_path / "cluster.json").read_bytes()


def test_bad_scheduler(tmp_path, weights_file):
    dask = pytest.importorskip("dask")
    result = cli("detect", IMAGES / COCO_NAMED[0], "--weights", weights_file, "--json-dir", tmp_path / "out",
                 "--scheduler", "local:0")
    assert result.returncode == 2 and stderr_lines(result) == [
        "ssd-np: error: --scheduler local:0: give local:N with N worker processes (a whole number >= 1)"]
    assert not (tmp_path / "out").exists()
    from ssd_np.cli.distributed import connect

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(CliError, match=r"^--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there \("):
        with connect("tcp://127.0.0.1:9"):
            pass


def test_missing_extra(tmp_path, monkeypatch, capsys, weights_file):
    real_import = builtins.__import__

    def without_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_dask)
    for argv in (["detect", str(IMAGES / COCO_NAMED[0]), "--weights", str(weights_file), "--json-dir", str(tmp_path)],
                 ["eval", "--annotations", str(DATA / "instances_val2017_dev.json"), "--images", str(IMAGES)]):
        assert main([*argv, "--scheduler", "local:2"]) == 2
        assert capsys.readouterr().err == ("ssd-np: error: --scheduler needs Dask: install ssd_np[dask] "
                                           "(pip install 'ssd_np[dask]')\n")
    assert not any(tmp_path.iterdir())


def test_workers_check_the_weights_file(tmp_path, weights_file):
    """A worker refuses weights it cannot read, or that differ from the client's (sha256), in one line."""
    pytest.importorskip("distributed")
    from ssd_np.cli.distributed import Weights, WorkerSetupError, _worker_detector
    from ssd_np.weights.hdf5 import sha256_file

    with pytest.raises(WorkerSetupError, match=r"^worker \(no worker\) cannot read the weights .*absent\.h5 \(No such "
                                                r"file or directory\); every worker must read the weights file at "
                                                r"this path$"):
        _worker_detector(Weights(str(tmp_path / "absent.h5"), "0" * 64))
    with pytest.raises(WorkerSetupError, match=r"is not the client's weights file \(another sha256\); put the same "
                                                r"file at this path on every worker$"):
        _worker_detector(Weights(str(weights_file), "0" * 64))
    weights = Weights(str(weights_file), sha256_file(weights_file))
    assert _worker_detector(weights) is _worker_detector(weights)  # loaded once, kept
