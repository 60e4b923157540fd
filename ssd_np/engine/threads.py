"""One thread per core during a forward pass: numba's OpenMP threads pinned while an image is computed.

A forward pass is ~50 parallel regions, each split evenly between the threads, so a region ends when its slowest
thread does. Between images the threads sleep. When the next image woke them, Linux at times ran two of them on
one vCPU for the rest of the image while the other idled (binding them cured it): on a 2-vCPU Zen 5 VM, one image
every 200 ms took 20-50 ms on two threads (one thread alone: 18 ms; back to back: 10 ms; OpenVINO: 12 ms).

`pinned()` therefore binds each of the pass's threads to a CPU of its own while the pass runs: the calling thread
to the first CPU it may use, numba's worker threads to the others; afterwards the calling thread gets its own CPU
mask back (the workers, numba's own threads, stay pinned). Only when the pass has one thread for each CPU the
calling thread may use: fewer threads (`NUMBA_NUM_THREADS=1`, Dask workers, or the cores shared out between
threads with `numba.set_num_threads`, as `ssd-np detect --jobs` does and as several threads calling at once
should) leave the scheduler free. Linux only (`sched_setaffinity` and the C library's `gettid`), with the JIT on;
not when the user binds OpenMP's threads (`OMP_PROC_BIND`, `OMP_PLACES` or `GOMP_CPU_AFFINITY` set;
`OMP_PROC_BIND=false` turns this off). Results do not depend on it: every region splits its work the same way wherever its threads run.
"""
from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager

import numba
import numpy as np
from numba import prange, types

from ssd_np.jit import njit

USER_BINDING = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY")
CAN_PIN = (hasattr(os, "sched_setaffinity") and hasattr(ctypes.CDLL(None), "gettid")
           and not numba.config.DISABLE_JIT  # no compiled code: no parallel regions, no gettid to call
           and not any(name in os.environ for name in USER_BINDING))

_gettid = types.ExternalFunction("gettid", types.int32())  # the calling thread's id (Linux)


@njit(parallel=True)
def _thread_ids(out):
    """out (threads,) int32: the thread id of each thread of a parallel region (one iteration per thread)."""
    for t in prange(out.size):
        out[t] = _gettid()


def _plan() -> tuple[list[int], list[int]] | None:
    """(the CPUs the calling thread may use, numba's worker thread ids) when the pass has one thread per CPU and
    each of its threads took one iteration of `_thread_ids`; else None (nothing to pin)."""
    threads = numba.get_num_threads()
    cpus = sorted(os.sched_getaffinity(0)) if CAN_PIN and threads > 1 else []
    if len(cpus) != threads:
        return None
    ids = np.zeros(threads, np.int32)
    _thread_ids(ids)
    me = threading.get_native_id()
    workers = [int(i) for i in ids if i != me]
    return (cpus, workers) if me in ids and len(set(workers)) == threads - 1 else None


@contextmanager
def pinned():
    """Run the body with each of numba's threads on a CPU of its own (see the module docstring), if it applies."""
    plan = _plan()
    if plan is None:
        yield
        return
    cpus, workers = plan
    try:
        os.sched_setaffinity(0, cpus[:1])
        for worker, cpu in zip(workers, cpus[1:]):
            os.sched_setaffinity(worker, (cpu,))
    except OSError:  # a thread gone or a CPU taken away meanwhile: the pass runs as the scheduler places it
        pass
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)
