"""engine.threads: during a forward pass each of numba's threads runs on a CPU of its own, the caller's CPU mask is
given back afterwards, and nothing is pinned when the pass does not use every CPU or the user binds OpenMP."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from ssd_np.engine.threads import USER_BINDING

PROBE = r"""
import json, os, numpy as np, numba
from ssd_np.engine import threads
before = sorted(os.sched_getaffinity(0))
ids = np.zeros(numba.get_num_threads(), np.int32)
with threads.pinned():
    threads._thread_ids(ids)
    caller = sorted(os.sched_getaffinity(0))
    each = [sorted(os.sched_getaffinity(int(i))) for i in ids]
print(json.dumps({"can_pin": threads.CAN_PIN, "before": before, "caller": caller, "each": each,
                  "after": sorted(os.sched_getaffinity(0))}))
"""

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2 or not sys.platform.startswith("linux"),
                                    reason="pinning needs Linux and two CPUs")


def probe(threads: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in USER_BINDING}
    env.update(NUMBA_NUM_THREADS=str(threads), **extra)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_two_cpus
def test_a_pass_on_every_cpu_pins_one_thread_per_cpu_then_frees_the_caller():
    seen = probe(len(CPUS))
    assert seen["can_pin"] and seen["before"] == CPUS
    assert seen["caller"] == CPUS[:1]
    assert sorted(cpu for mask in seen["each"] for cpu in mask) == CPUS  # one CPU each, all of them
    assert all(len(mask) == 1 for mask in seen["each"])
    assert seen["after"] == CPUS


@needs_two_cpus
@pytest.mark.parametrize("threads, extra", [(1, {}), (2, {"OMP_PROC_BIND": "false"})])
def test_no_pinning_with_fewer_threads_than_cpus_or_the_users_own_binding(threads, extra):
    if threads == len(CPUS) and not extra:
        pytest.skip("this machine has one thread per CPU at that count")
    seen = probe(threads, **extra)
    assert seen["caller"] == CPUS and seen["after"] == CPUS
    assert all(mask == CPUS for mask in seen["each"])
    assert seen["can_pin"] is not bool(extra)


def test_with_the_jit_off_a_pass_runs_unpinned():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    code = "from ssd_np.engine import threads\nwith threads.pinned():\n    print(threads.CAN_PIN)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
