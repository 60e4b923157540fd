"""Benchmark ssd_np against OpenVINO, ONNX Runtime, TensorFlow and OpenCV DNN on one image (reference venv).

    .venv-ref/bin/python tools/bench.py [--out bench.md] [--work /tmp/ssd_np_bench]
        [--opencv-samples DIR] [--onnx-pythonpath DIR] [--runs 40] [--asm] [--cpu-name haswell]

Needs the reference venv `.venv-ref/bin/python` (numba, numpy 1.26, tensorflow-cpu 2.17.1, openvino 2024.6,
onnxruntime, tf2onnx, opencv-python-headless); ssd_np is imported from this repository. A peer whose package or
model is missing is skipped with a note: the benchmark runs with ssd_np alone.

What it measures (the performance issue's protocol):
1. Latency, one 300x300 RGB image (`--image`, default `tests/data/images/exact_300x300.png`), batch 1, the full
   pipeline including pre- and post-processing. Every runtime runs the same stand-in weights (seed 1, "sparse";
   `tools/peers.py` builds and caches the models under `--work`). For each thread count (1, then 2) a fresh
   subprocess gets the thread environment (NUMBA_NUM_THREADS, OMP/OPENBLAS/MKL_NUM_THREADS) before numpy is
   imported, loads every runtime with that many threads, runs `--warmup` untimed calls of each, then `--runs`
   rounds in which every runtime runs once (round-robin, the order rotated every round, `--gap` seconds of
   sleep after each call so one runtime's spinning threads do not eat into the next one's time).
   Reported: median and p10-p90 in ms, and ssd_np's median / the peer's median.
   ssd_np rows: `ssd_np` = `model.tf_outputs` (TF's four outputs, what `Detector` runs) on the RGB image;
   `ssd_np detection_out` = `model.detection_out` (OpenVINO's output format) on the same RGB image.
2. ssd_np per stage, in the same round-robin (an extra entry): preprocess (`preprocess.preprocess`), backbone
   (`mobilenet_v2.feature_maps`), heads (`box_predictor.predict`), post-processing (`postprocess.tf_outputs`,
   anchors included); then, re-run on the same tensors, its parts: decode (`anchors.ssd_anchors` +
   `box_coder.decode` + `box_coder.scores`) and per-class NMS (`postprocess.multiclass_nms_fast`).
3. Cold start, in a fresh process of `--ssd-python` (default: the `python3` on PATH, ssd_np's runtime
   environment) with numba's cache warm (and the first run, with an empty cache): measured inside the process from before `import ssd_np` to the first
   result of `Detector.load(h5)(image)`, run twice, the second reported. Import + JIT = import time + (first
   image - second image).
4. Peak RSS (`ru_maxrss`) of a fresh `--ssd-python` process that loads the weights and detects one 640x480 image.
5. Batch throughput of `ssd-np detect` (`--ssd-python -m ssd_np.cli detect`) on `--batch-images` images
   (COCO development images, else the repo's test images): `--jobs 1` with one numba thread (the single-image
   rate on one core), `--jobs 1` with the default threads, and the default (one image per core at a time),
   `--batch-rounds` rounds of the three,
   interleaved, the median run of each reported. The rate compared is ssd-np's own
   (images / time after the weights are loaded: decoding, model, writing); the wall time of the whole command
   is shown beside it, and, for scale, what two threads of cache-resident FMA work get from the machine
   against one, measured before each round (on a shared VM it is often well under 2x).
6. GEMM kernels against the FMA peak at one thread: `conv.conv_bn_act` on three layer shapes and Winograd's
   batched GEMM, operands cache-resident, against a register-resident FMA loop compiled for the same ISA,
   interleaved rounds (`--gemm-rounds`).
7. ISA: `--cpu-name NAME` (e.g. `haswell`: AVX2 + FMA) compiles ssd_np's kernels for another CPU
   (NUMBA_CPU_NAME, with NUMBA_CPU_FEATURES empty unless `--cpu-features`, and a numba cache under `--work` of
   its own); the report names the ISA the kernels were compiled for (`engine.simd.TARGET`) and the CPU's flags.
   The peers are not affected (OpenVINO can be capped with `--env ONEDNN_MAX_CPU_ISA=AVX2`, see the report).
8. `--asm`: `tools/inspect_asm.py` reports whether numba's machine code for ssd_np's kernels uses AVX-512/AVX2
   registers and FMA instructions.

The machine is described (CPU model, AVX flags, load average before and after): on a shared machine the numbers
are indicative. The Markdown report goes to stdout and to `--out`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
sys.path.insert(0, str(TOOLS))

import peers  # noqa: E402

DEFAULT_IMAGE = ROOT / "tests" / "data" / "images" / "exact_300x300.png"
from paths import COCO  # noqa: E402

COCO_DEV = COCO / "val2017_dev"
SSD = "ssd_np"
SSD_DO = "ssd_np detection_out"
STAGED = "ssd_np (staged)"
STAGES = ("preprocess", "backbone", "heads", "postprocess", "decode", "nms")
STAGE_LABELS = {
    "preprocess": "preprocess (`engine.preprocess.preprocess`)",
    "backbone": "backbone (`engine.network.feature_maps`)",
    "heads": "heads (`engine.network.predict`)",
    "postprocess": "post-processing total (`reference.postprocess.tf_outputs` with `engine.postprocess.OPS`, anchors included)",
    "decode": "&nbsp;&nbsp;of which decode (anchors + `box_coder.decode` + `box_coder.scores`)",
    "nms": "&nbsp;&nbsp;of which per-class NMS (`engine.postprocess.multiclass_nms`)",
}
THREAD_ENV = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ------------------------------------------------------------------------------------------------ statistics

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [1000.0 * t for t in seconds]
    return {"median": percentile(ms, 50), "p10": percentile(ms, 10), "p90": percentile(ms, 90), "n": len(ms)}


# ------------------------------------------------------------------------------------------------ the worker

def _ssd_runners(h5: str) -> tuple[dict, dict[str, list[float]], str]:
    """ssd_np's two full pipelines and its staged pipeline (which appends to the returned stage times), with the
    weights of `h5`; and the versions that matter."""
    sys.path.insert(0, str(ROOT))
    import numba
    import numpy as np

    from ssd_np import model
    from ssd_np.engine import network, threads
    from ssd_np.engine.postprocess import OPS, multiclass_nms
    from ssd_np.engine.preprocess import preprocess
    from ssd_np.reference import box_coder, postprocess
    from ssd_np.reference.anchors import ssd_anchors
    from ssd_np.weights.hdf5 import load_weights

    layers = model.prepare(load_weights(h5)[0])  # as Detector does: layouts packed once, not per call
    stage_times: dict[str, list[float]] = {s: [] for s in STAGES}

    def tf_path(images) -> int:
        return int(model.tf_outputs(images["rgb"], layers)["num_detections"][0])

    def openvino_path(images) -> int:
        rows = model.detection_out(images["rgb"], layers)[0, 0]
        return int(np.count_nonzero(rows[rows[:, 0] >= 0, 2] > 0))

    def staged(images) -> int:
        clock = time.perf_counter
        with threads.pinned():  # as model.predict runs them
            t0 = clock()
            x = preprocess(images["rgb"])
            t1 = clock()
            features = network.feature_maps(x, layers)
            t2 = clock()
            box_encodings, class_logits = network.predict(features, layers)
            t3 = clock()
        out = postprocess.tf_outputs(box_encodings, class_logits, ssd_anchors(), {}, OPS)
        t4 = clock()
        boxes = box_coder.decode(box_encodings, ssd_anchors(), {}, OPS.tf_exp)
        scores = box_coder.scores(class_logits, {}, OPS.tf_sigmoid)[:, 1:]
        t5 = clock()
        multiclass_nms(boxes, scores)
        t6 = clock()
        for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            stage_times[name].append(dt)
        return int(out["num_detections"][0])

    runners = {SSD: tf_path, SSD_DO: openvino_path, STAGED: staged}
    return runners, stage_times, f"numpy {np.__version__}, numba {numba.__version__}"


def worker(spec: dict) -> dict:
    """One thread count: load every runtime, warm up, time them round-robin. Returns the raw times."""
    import numba
    import numpy as np
    from PIL import Image

    threads = spec["threads"]
    numba.set_num_threads(threads)
    rgb = np.ascontiguousarray(np.asarray(Image.open(spec["image"]).convert("RGB")))
    if rgb.shape[:2] != (300, 300):
        raise SystemExit(f"the benchmark image must be 300x300, {spec['image']} is {rgb.shape[1]}x{rgb.shape[0]}")
    images = {"rgb": rgb, "bgr": np.ascontiguousarray(rgb[:, :, ::-1])}

    versions, notes = {}, {}
    runners, stage_times, versions[SSD] = _ssd_runners(spec["paths"]["h5"])
    for name in spec["peers"]:
        try:
            runners[name], versions[name] = peers.load_runner(name, spec["paths"], threads)
        except Exception as e:  # noqa: BLE001 - a peer that cannot load is reported, not fatal
            notes[name] = f"{type(e).__name__}: {e}"

    detections = {}
    for name, run in runners.items():
        for _ in range(spec["warmup"]):
            detections[name] = run(images)
    for series in stage_times.values():
        series.clear()

    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(spec["runs"]):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            runners[name](images)
            times[name].append(time.perf_counter() - t0)
            time.sleep(spec["gap"])
    return {"threads": threads, "numba_threads": numba.get_num_threads(), "numba_layer": numba.threading_layer(),
            "times": times, "stages": stage_times, "detections": detections, "versions": versions, "notes": notes}


def run_worker(threads: int, spec: dict, work: Path, extra_env: dict) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update({k: str(threads) for k in THREAD_ENV})
    env.update(extra_env)
    spec = dict(spec, threads=threads)
    out = work / f"worker-{threads}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(spec), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker ({threads} threads) failed (exit {result.returncode}):\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------ ssd_np processes

COLD_START = r"""
import json, sys, time
t0 = time.perf_counter()
from ssd_np.detector import Detector
t1 = time.perf_counter()
detector = Detector.load(sys.argv[1])
t2 = time.perf_counter()
first = detector(sys.argv[2])
t3 = time.perf_counter()
detector(sys.argv[2])
t4 = time.perf_counter()
import resource
usage, helpers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"import": t1 - t0, "weights": t2 - t1, "first": t3 - t2, "second": t4 - t3,
                  "to_first_result": t3 - t0, "detections": len(first), "cpu": usage.ru_utime + usage.ru_stime,
                  "helper_cpu": helpers.ru_utime + helpers.ru_stime}))
"""

PEAK_RSS = r"""
import json, resource, sys
from ssd_np.detector import Detector
found = Detector.load(sys.argv[1])(sys.argv[2])
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "detections": len(found),
                  "image_size": found.image_size}))
"""

MACHINE_SCALING = r"""
import json, threading, time
import numba, numpy as np
from ssd_np.engine import winograd
from ssd_np.engine.conv import NR
from ssd_np.engine.simd import empty_aligned
# Cache-resident FMA work (a small Winograd GEMM: 0.3 MB of data), one thread alone, then two at once.
layer = winograd.prepare(np.full((3, 3, 64, 64), 0.01, np.float32), np.zeros(64, np.float32))
v = empty_aligned((16, 30, 64)); v[:] = 1.0
def loop(out, i, n=3000):
    numba.set_num_threads(1)
    m = empty_aligned((16, 30, layer.packed.shape[1] * NR))  # (16, tiles, panels * NR)
    winograd._batched_gemm(v, layer.packed, 6, m)
    t = time.perf_counter()
    for _ in range(n):
        winograd._batched_gemm(v, layer.packed, 6, m)
    out[i] = time.perf_counter() - t
alone, pair = [0.0], [0.0, 0.0]
loop(alone, 0)
threads = [threading.Thread(target=loop, args=(pair, i)) for i in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"scaling": 2 * alone[0] / max(pair)}))
"""

GEMM_PEAK = r"""
import json, sys, time
import numba, numpy as np
from ssd_np.engine import conv, simd, winograd
numba.set_num_threads(1)
T = simd.TARGET
# The ISA's FMA peak: a register-resident loop of k independent F32x16 FMA chains (as many as the registers hold
# beside the two operands, at most 12), compiled by numba for the same CPU name and features as the kernels.
k = min(12, T.registers // simd.REGISTERS_PER_VECTOR - 2)
names = [f"s{i}" for i in range(k)]
src = ["def peak(x, n):", "    a = simd.vload(x, 0)", "    b = simd.vload(x, 16)"]
src += [f"    {s} = simd.vload(x, {32 + 16 * i})" for i, s in enumerate(names)]
src += ["    for _ in range(n):"] + [f"        {s} = simd.vfma(a, {s}, b)" for s in names]
src += [f"    simd.vstore(x, {32 + 16 * i}, {s})" for i, s in enumerate(names)]
scope = {"simd": simd}
exec("\n".join(src), scope)
peak = numba.njit(scope["peak"])
x = np.full(32 + 16 * k, 0.5, np.float32)
n = 300_000
cases = {"peak": (lambda: peak(x, n), 2 * 16 * k * n)}
rng = np.random.default_rng(0)
for label, shape, w_shape in (("conv_bn_act 1x1, 19x19x96 -> 576 (K = 96)", (19, 19, 96), (1, 1, 96, 576)),
                              ("conv_bn_act 1x1, 10x10x960 -> 320 (K = 960)", (10, 10, 960), (1, 1, 960, 320)),
                              ("conv_bn_act 3x3, 19x19x64 -> 128 (K = 576)", (19, 19, 64), (3, 3, 64, 128))):
    xx = rng.standard_normal(shape).astype(np.float32)
    layer = conv.prepare_conv(rng.standard_normal(w_shape).astype(np.float32))
    cases[label] = ((lambda xx=xx, layer=layer: conv.conv_bn_act(xx, layer, 1, relu6=True)),
                    2 * shape[0] * shape[1] * int(np.prod(w_shape)))
wg = winograd.prepare(rng.standard_normal((3, 3, 576, 285)).astype(np.float32), np.zeros(285, np.float32))
v = simd.empty_aligned((16, 102, 576)); v[:] = 1.0
m = simd.empty_aligned((16, 102, wg.packed.shape[1] * conv.NR))
cases[f"winograd._batched_gemm, 16 x (102x576 @ 576x{wg.packed.shape[1] * conv.NR})"] = (
    lambda: winograd._batched_gemm(v, wg.packed, 6, m), 2 * 16 * 102 * 576 * wg.packed.shape[1] * conv.NR)
rates = {name: [] for name in cases}
for f, _ in cases.values():
    f()
for _ in range(int(sys.argv[1])):  # interleaved rounds, best of 3 calls of each case per round
    for name, (f, flops) in cases.items():
        best = 1e9
        for _ in range(3):
            t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
        rates[name].append(flops / best / 1e9)
print(json.dumps({"target": T._asdict(), "nr": conv.NR, "mr": conv.MR, "accumulators": k, "rates": rates}))
"""

VERSIONS = r"""
import json, sys, numpy, numba, llvmlite, PIL, h5py
print(json.dumps({"python": sys.version.split()[0], "numpy": numpy.__version__, "numba": numba.__version__,
                  "llvmlite": llvmlite.__version__, "pillow": PIL.__version__, "h5py": h5py.__version__}))
"""


def ssd_env(extra: dict | None = None) -> dict:
    """The environment of ssd_np's own processes: the repo first on sys.path, no thread limits of ours."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def run_json(python: str, code: str, args: list[str], env: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    result = subprocess.run([python, "-c", code, *args], env=env, capture_output=True, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{python} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall


def cold_start(python: str, h5: str, image: str, env: dict, work: Path) -> dict:
    """Two fresh processes: the first with an empty numba cache (a first run: everything compiled), the second
    with the benchmark's warm cache; the second's times, the first's time to its result and CPU time."""
    empty = work / "numba_cache_empty"
    shutil.rmtree(empty, ignore_errors=True)
    first, _ = run_json(python, COLD_START, [h5, image], {**env, "NUMBA_CACHE_DIR": str(empty)})
    shutil.rmtree(empty, ignore_errors=True)
    run_json(python, COLD_START, [h5, image], env)  # the warm cache, if the workers did not fill it
    second, wall = run_json(python, COLD_START, [h5, image], env)
    second["process_wall"] = wall
    second["first_run_to_first_result"] = first["to_first_result"]
    second["first_run_cpu"] = first["cpu"]
    second["first_run_helper_cpu"] = first["helper_cpu"]
    second["import_jit"] = second["import"] + max(0.0, second["first"] - second["second"])
    return second


def find_image(width: int, height: int, work: Path) -> Path:
    """A width x height photo: from the repo's test images, else the COCO dev set, else a resized test image."""
    from PIL import Image

    for folder in (ROOT / "tests" / "data" / "images", COCO_DEV):
        for path in sorted(folder.glob("*.jpg")) if folder.is_dir() else []:
            with Image.open(path) as im:
                if im.size == (width, height):
                    return path
    out = work / f"image_{width}x{height}.png"
    Image.open(DEFAULT_IMAGE).convert("RGB").resize((width, height), Image.BILINEAR).save(out)
    return out


def batch_images(count: int) -> list[Path]:
    images = sorted(COCO_DEV.glob("*.jpg")) if COCO_DEV.is_dir() else []
    if len(images) < count:
        images += sorted((ROOT / "tests" / "data" / "images").glob("*.jpg"))
    return images[:count]


def peak_rss(python: str, h5: str, work: Path, env: dict) -> dict:
    image = find_image(640, 480, work)
    run_json(python, PEAK_RSS, [h5, str(image)], env)  # numba's cache warm for this process's types
    out, _ = run_json(python, PEAK_RSS, [h5, str(image)], env)
    out["image"] = image.name
    return out


def batch_throughput(python: str, h5: str, images: list[Path], env: dict, rounds: int) -> list[dict]:
    """`ssd-np detect` over `images`: --jobs 1 (1 numba thread), --jobs 1 (default threads), the default (one
    image per core), each run `rounds` times, interleaved (the machine's drift hits every configuration alike);
    the median rate is kept. Each round first measures what two threads of cache-resident FMA work get from the
    machine against one (`MACHINE_SCALING`): the ceiling of any two-core speedup at that moment."""
    configs = (("--jobs 1, 1 numba thread", ["--jobs", "1"], {"NUMBA_NUM_THREADS": "1"}),
               ("--jobs 1, default threads", ["--jobs", "1"], {}),
               ("default (one image per core)", [], {}))
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
    scaling = []
    for _ in range(rounds):
        scaling.append(run_json(python, MACHINE_SCALING, [], env)[0]["scaling"])
        for label, options, extra in configs:
            command = [python, "-m", "ssd_np.cli", "detect", *map(str, images), "--weights", h5, *options]
            t0 = time.perf_counter()
            result = subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, cwd=str(ROOT))
            wall = time.perf_counter() - t0
            if result.returncode != 0:
                raise RuntimeError(f"ssd-np detect failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
            own = [line for line in result.stderr.splitlines() if "images/s" in line][-1].removeprefix("ssd-np: ")
            rate = float(re.search(r"([0-9.]+) images/s", own).group(1))
            runs[label].append({"wall": wall, "rate": rate, "own": own})
    rows = []
    for label, options, _ in configs:
        by_rate = sorted(runs[label], key=lambda r: r["rate"])
        median = by_rate[len(by_rate) // 2]
        rows.append({"label": label, "options": options, "images": len(images), "rounds": rounds, **median,
                     "rates": [r["rate"] for r in runs[label]], "machine_scaling": scaling})
    return rows


def gemm_peak(python: str, env: dict, rounds: int) -> dict:
    """The GEMM kernels' FLOP rate at one thread against the ISA's FMA peak (`GEMM_PEAK`): per case the median
    rate and, per round, rate / the peak loop's rate of the same round, its median."""
    out, _ = run_json(python, GEMM_PEAK, [str(rounds)], env)
    peak = out["rates"]["peak"]
    out["cases"] = {name: {**summary_rate(rates), "fraction": percentile([r / q for r, q in zip(rates, peak)], 50)}
                    for name, rates in out["rates"].items()}
    return out


def summary_rate(rates: list[float]) -> dict[str, float]:
    return {"median": percentile(rates, 50), "min": min(rates), "max": max(rates)}


def numba_target_env(cpu_name: str | None, cpu_features: str | None, work: Path) -> dict:
    """NUMBA_CPU_NAME / NUMBA_CPU_FEATURES for ssd_np's processes, and a numba cache of their own (the on-disk
    cache is per source file: kernels for another CPU would evict the host's). A CPU name without features gets
    the empty feature string, i.e. that CPU's own ISA (numba would otherwise keep the host's features: AVX-512
    code under the name `haswell`)."""
    if cpu_name is None and cpu_features is None:
        return {}
    env = {"NUMBA_CPU_FEATURES": cpu_features or ""}
    if cpu_name:
        env["NUMBA_CPU_NAME"] = cpu_name
    tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{cpu_name or 'host'}_{cpu_features or ''}").strip("_")
    env["NUMBA_CACHE_DIR"] = str(work / f"numba_cache_{tag}")
    return env


# ------------------------------------------------------------------------------------------------ the machine

def machine() -> dict:
    info = {"cpu": platform.processor() or "unknown", "flags": [], "cores": os.cpu_count(), "mem_gib": None}
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                                             "avx512_bf16", "amx_tile") if f in flags]
                break
        info["cpu"] = f"{fields.get('model name', info['cpu'])} (family {fields.get('cpu family', '?')}, model " \
                      f"{fields.get('model', '?')})"
        mem = Path("/proc/meminfo").read_text().split()
        info["mem_gib"] = round(int(mem[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def peer_versions() -> dict:
    """Installed distributions of the reference venv (metadata only: nothing is imported)."""
    out = {}
    for dist in ("tensorflow-cpu", "tensorflow", "openvino", "onnxruntime", "tf2onnx", "onnx", "opencv-python-headless",
                 "opencv-python", "numpy", "numba"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------------------------------------ the report

def fmt(s: dict | None) -> str:
    if not s:
        return "—"
    return f"{s['median']:.1f} ({s['p10']:.1f}–{s['p90']:.1f})"


def ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['median'] / b['median']:.2f}x" if a and b else "—"


def report(args, results: dict[int, dict], build_info: dict, extras: dict) -> str:
    t = list(results)
    lines = ["# ssd_np benchmark", ""]
    lines.append(f"One {args.image.name} 300x300 image, batch 1, full pipeline with pre- and post-processing, "
                 f"stand-in weights (seed 1, sparse) in every runtime; {args.warmup} warm-up calls excluded, median "
                 f"of {args.runs} calls (p10–p90) in ms, all runtimes round-robin in one process per thread count, "
                 f"{args.gap * 1000:.0f} ms pause after each call.")
    lines.append("")
    header = "| runtime | " + " | ".join(f"{n} thread{'s' if n > 1 else ''} ms" for n in t) + " | " + \
             " | ".join(f"ssd_np / peer, {n}T" for n in t) + " | detections |"
    lines += [header, "|" + "---|" * (2 + 2 * len(t))]
    names = [SSD, SSD_DO] + [p for p in peers.PEERS]
    for name in names:
        s = {n: summary(results[n]["times"][name]) if name in results[n]["times"] else None for n in t}
        if not any(s.values()):
            continue
        ratios = [("—" if name in (SSD, SSD_DO) else ratio(summary(results[n]["times"][SSD]), s[n])) for n in t]
        det = sorted({results[n]["detections"].get(name) for n in t} - {None})
        lines.append(f"| {name} | " + " | ".join(fmt(s[n]) for n in t) + " | " + " | ".join(ratios) +
                     f" | {', '.join(map(str, det))} |")
    lines.append("")
    unavailable = dict(build_info["unavailable"])
    for n in t:
        unavailable.update({k: v for k, v in results[n]["notes"].items() if k not in unavailable})
    skipped = [p for p in peers.PEERS if p not in args.peers]
    for name in peers.PEERS:
        if name in unavailable:
            lines.append(f"- **{name} unavailable**: {unavailable[name]}")
        elif name in skipped:
            lines.append(f"- {name}: not requested (`--peers`).")
    lines.append("- detections: ssd_np, TensorFlow and ONNX Runtime report TF's `num_detections`; OpenVINO and "
                 "OpenCV DNN count `detection_out` rows with confidence > 0.3 (different post-processing: "
                 "OpenVINO/OpenCV apply top-k before NMS).")
    lines.append("")

    lines += ["## ssd_np per stage", "",
              "Median (p10–p90) ms over the same rounds, in the same processes; `ssd_np (staged)` runs the stages "
              "one after the other, then re-runs decode and NMS alone on the same tensors.", ""]
    lines += ["| stage | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in t) + " | share of the "
              f"{t[-1]}-thread total |", "|" + "---|" * (2 + len(t))]
    main_total = {n: sum(summary(results[n]["stages"][s])["median"] for s in STAGES[:4]) for n in t}
    for stage in STAGES:
        s = {n: summary(results[n]["stages"][stage]) for n in t}
        share = 100.0 * s[t[-1]]["median"] / main_total[t[-1]]
        lines.append(f"| {STAGE_LABELS[stage]} | " + " | ".join(fmt(s[n]) for n in t) + f" | {share:.0f} % |")
    lines.append("| sum of the four stages (medians) | " + " | ".join(f"{main_total[n]:.1f}" for n in t) +
                 " | 100 % |")
    lines.append("")

    cs = extras.get("cold_start")
    lines += ["## Cold start, memory, batch throughput", ""]
    if isinstance(cs, dict):
        lines.append(f"Cold start (`{args.ssd_python}`, numba cache warm, second of two fresh processes, "
                     f"`Detector.load(h5)(image)` on {args.image.name}): **{cs['to_first_result']:.2f} s** from before "
                     f"`import ssd_np` to the first result (import {cs['import']:.2f} s, weights {cs['weights']:.2f} s, "
                     f"first image {cs['first']:.2f} s; second image {cs['second']:.3f} s); "
                     f"**import + JIT {cs['import_jit']:.2f} s** (import + first image − second image); "
                     f"whole process incl. interpreter start {cs['process_wall']:.2f} s. **First run, empty numba cache "
                     f"(every kernel compiled): {cs['first_run_to_first_result']:.1f} s** to the first result, "
                     f"{cs['first_run_cpu']:.1f} s CPU in the process and {cs['first_run_helper_cpu']:.1f} s in its "
                     f"compile helper (`engine.warmup`).")
    else:
        lines.append(f"Cold start: not measured ({cs}).")
    lines.append("")
    rss = extras.get("peak_rss")
    if isinstance(rss, dict):
        lines.append(f"Peak RSS (`ru_maxrss`, fresh process, load weights + detect one {rss['image_size'][1]}x"
                     f"{rss['image_size'][0]} image `{rss['image']}`): **{rss['maxrss_kib'] / 1024:.0f} MiB**.")
    else:
        lines.append(f"Peak RSS: not measured ({rss}).")
    lines.append("")
    batch = extras.get("batch")
    if isinstance(batch, list):
        base = batch[0]["rate"]
        lines += [f"`ssd-np detect` on {batch[0]['images']} images, {batch[0]['rounds']} interleaved rounds "
                  f"(images/s: ssd-np's own rate once the weights are loaded, median run; wall: the whole command "
                  f"of that run):", "",
                  "| run | images/s | vs `--jobs 1`, 1 thread | every round | wall s | ssd-np's own summary |",
                  "|---|---|---|---|---|---|"]
        for row in batch:
            rates = ", ".join(f"{r:.1f}" for r in row["rates"])
            lines.append(f"| {row['label']} | {row['rate']:.2f} | {row['rate'] / base:.2f}x | {rates} | "
                         f"{row['wall']:.1f} | {row['own']} |")
        lines += ["", "The machine's own two-thread speedup on cache-resident FMA work, measured before each round: "
                  + ", ".join(f"{x:.2f}x" for x in batch[0]["machine_scaling"]) + "."]
    else:
        lines.append(f"Batch throughput: not measured ({batch}).")
    lines.append("")

    gemm = extras.get("gemm")
    lines += ["## GEMM kernels against the FMA peak (1 thread)", ""]
    if isinstance(gemm, dict):
        target = gemm["target"]
        lines += [f"Kernels compiled for `{target['cpu']}`: **{target['isa']}** ({target['vector_bits']}-bit vectors, "
                  f"{target['registers']} registers; register tile MR x NR = {gemm['mr']} x {gemm['nr']}). Peak: a "
                  f"register-resident loop of {gemm['accumulators']} independent F32x16 FMA chains compiled for the "
                  f"same CPU. GFLOP/s median (min–max) over {len(gemm['rates']['peak'])} interleaved rounds (best of "
                  f"3 calls each); fraction = median over the rounds of rate / that round's peak.", "",
                  "| kernel (cache-resident operands) | GFLOP/s | fraction of peak |", "|---|---|---|"]
        for name, c in gemm["cases"].items():
            share = "1" if name == "peak" else f"{100 * c['fraction']:.0f} %"
            lines.append(f"| {'FMA peak loop' if name == 'peak' else name} | {c['median']:.1f} ({c['min']:.1f}–"
                         f"{c['max']:.1f}) | {share} |")
    else:
        lines.append(f"Not measured ({gemm}).")
    lines.append("")

    asm = extras.get("asm")
    if asm:
        lines += ["## Machine code of ssd_np's numba kernels (`tools/inspect_asm.py`)", "", asm.strip(), ""]

    mach = extras["machine"]
    lines += ["## Machine and versions", ""]
    lines.append(f"- CPU: {mach['cpu']}, {mach['cores']} logical cores, {mach['mem_gib']} GiB; flags: "
                 f"{', '.join(mach['flags']) or 'none of avx2/avx512'}")
    lines.append(f"- load average before / after: {extras['load_before']} / {extras['load_after']} "
                 f"(shared machine: the numbers are indicative)")
    for n in t:
        lines.append(f"- {n}-thread worker: numba threads {results[n]['numba_threads']} "
                     f"({results[n]['numba_layer']} threading layer); " +
                     "; ".join(f"{k}: {v}" for k, v in results[n]["versions"].items()))
    lines.append(f"- reference venv `{sys.executable}`: python {platform.python_version()}; " +
                 ", ".join(f"{k} {v}" for k, v in extras["peer_versions"].items()))
    sv = extras.get("ssd_versions")
    if isinstance(sv, dict):
        lines.append(f"- ssd_np processes `{args.ssd_python}`: " + ", ".join(f"{k} {v}" for k, v in sv.items()))
    lines.append(f"- extra environment (`--env`): {', '.join(args.env) or 'none'}; numba target of ssd_np's "
                 f"processes: {', '.join(f'{k}={v!r}' for k, v in extras['numba_env'].items()) or 'the host CPU'}")
    lines.append(f"- models: {build_info['paths']['frozen']} and siblings (built by `tools/peers.py`; ONNX by tf2onnx, "
                 f"opset {peers.ONNX_OPSET}, onnx from {args.onnx_pythonpath or 'the venv'}; OpenCV text graph by "
                 f"{args.opencv_samples or '—'}/tf_text_graph_ssd.py)")
    lines.append(f"- command: `{' '.join(shlex.quote(a) for a in [sys.executable] + sys.argv)}`")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main

def default_ssd_python() -> str:
    """The interpreter behind `python3` on PATH (resolved: a pyenv shim would add its own start-up time)."""
    python3 = shutil.which("python3")
    if python3 is None:
        return sys.executable
    result = subprocess.run([python3, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else python3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        Path(argv[2]).write_text(json.dumps(worker(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench.md"), help="Markdown report (default bench.md)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssd_np_bench"), help="model cache and scratch")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the 300x300 benchmark image")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds of sleep after each timed call")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--peers", nargs="*", default=list(peers.PEERS), choices=peers.PEERS, metavar="PEER",
                        help=f"peers to run (default all: {', '.join(peers.PEERS)})")
    parser.add_argument("--opencv-samples", help="directory with OpenCV's tf_text_graph_ssd.py + tf_text_graph_common.py")
    parser.add_argument("--onnx-pythonpath", help="prepended to PYTHONPATH of tf2onnx (a directory with onnx 1.17)")
    parser.add_argument("--ssd-python", default=default_ssd_python(),
                        help="interpreter for cold start, peak RSS and `ssd-np detect` (default: python3 on PATH)")
    parser.add_argument("--batch-images", type=int, default=100)
    parser.add_argument("--batch-rounds", type=int, default=3)
    parser.add_argument("--skip-batch", action="store_true", help="do not run the `ssd-np detect` throughput")
    parser.add_argument("--asm", action="store_true", help="also inspect numba's machine code (tools/inspect_asm.py)")
    parser.add_argument("--cpu-name", help="compile ssd_np's kernels for this LLVM CPU (NUMBA_CPU_NAME, e.g. "
                        "haswell or znver3 for AVX2 code on an AVX-512 machine), with its own numba cache")
    parser.add_argument("--cpu-features", help="NUMBA_CPU_FEATURES for ssd_np's kernels (default with --cpu-name: "
                        "none beyond the CPU's own; e.g. +avx2,+fma,+f16c)")
    parser.add_argument("--gemm-rounds", type=int, default=15, help="rounds of the GEMM / FMA peak measurement")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every benchmark process (e.g. OMP_WAIT_POLICY=passive)")
    args = parser.parse_args(argv)
    bad = [e for e in args.env if "=" not in e]
    if bad:
        parser.error(f"--env takes KEY=VALUE, got {bad[0]!r}")
    extra_env = dict(e.split("=", 1) for e in args.env)
    args.work.mkdir(parents=True, exist_ok=True)
    numba_env = numba_target_env(args.cpu_name, args.cpu_features, args.work)
    extra_env.update(numba_env)

    extras: dict = {"machine": machine(), "load_before": load_average(), "numba_env": numba_env}
    print(f"building/reusing models under {args.work} ...", file=sys.stderr)
    build_info = peers.build(args.work, opencv_samples=args.opencv_samples, onnx_pythonpath=args.onnx_pythonpath)
    available = [p for p in args.peers if p not in build_info["unavailable"]]
    spec = {"image": str(args.image), "paths": build_info["paths"], "peers": available, "runs": args.runs,
            "warmup": args.warmup, "gap": args.gap}
    results = {}
    for n in args.threads:
        print(f"timing with {n} thread(s) ...", file=sys.stderr)
        results[n] = run_worker(n, spec, args.work, extra_env)

    h5 = build_info["paths"]["h5"]
    env = ssd_env(extra_env)
    steps = {
        "cold_start": lambda: cold_start(args.ssd_python, h5, str(args.image), env, args.work),
        "peak_rss": lambda: peak_rss(args.ssd_python, h5, args.work, env),
        "batch": (lambda: "skipped (--skip-batch)") if args.skip_batch else
                 (lambda: batch_throughput(args.ssd_python, h5, batch_images(args.batch_images), env,
                                                  args.batch_rounds)),
        "gemm": lambda: gemm_peak(args.ssd_python, env, args.gemm_rounds),
        "ssd_versions": lambda: run_json(args.ssd_python, VERSIONS, [], env)[0],
    }
    for key, step in steps.items():
        print(f"{key} ...", file=sys.stderr)
        try:
            extras[key] = step()
        except Exception as e:  # noqa: BLE001 - reported in the table
            extras[key] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    if args.asm:
        print("inspecting numba's machine code ...", file=sys.stderr)
        result = subprocess.run([args.ssd_python, str(TOOLS / "inspect_asm.py"), "--weights", h5],
                                env=env, capture_output=True, text=True, cwd=str(ROOT))
        extras["asm"] = result.stdout if result.returncode == 0 else \
            f"inspect_asm.py failed (exit {result.returncode}): {result.stderr[-2000:]}"
    extras["peer_versions"] = peer_versions()
    extras["load_after"] = load_average()

    text = report(args, results, build_info, extras)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
