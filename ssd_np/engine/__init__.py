"""The fast engine: the reference's graph on numba kernels, the same results held to it by the tests.

    simd.py               the target ISA, 16-lane float32 vectors (LLVM intrinsics), aligned buffers
    conv.py               Conv2D as an implicit GEMM in register tiles, batch norm / ReLU6 / residual fused
    depthwise.py          the 3x3 depthwise convolution, batch norm and ReLU6 fused
    inverted_residual.py  a whole expanded_conv block in one pass over the image's rows
    winograd.py           Winograd F(2x2, 3x3) for the large box predictors
    network.py            the layers prepared once, the feature maps and the box predictors
    preprocess.py         the TF resize, compiled
    elementwise.py        TF's and OpenVINO's exp and sigmoid, compiled
    nms.py, postprocess.py  the NMS and per-class loops, compiled
    threads.py            a thread per core, pinned while an image is computed
    warmup.py             the first run's compilation on two cores, `ssd-np warmup`
Each compiled function has its reference twin under the same name (`engine.nms.non_max_suppression_v2` and
`reference.nms.non_max_suppression_v2`, `engine.conv.conv2d` and `reference.mobilenet_v2.conv2d`, ...).

Threads. numba's OpenMP threads (libgomp) wait for the next parallel region by spinning GOMP_SPINCOUNT times,
then sleep. A forward pass is ~50 regions microseconds apart. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) loses
the second core on small VMs (a woken thread starts late); libgomp's default 300000 spins (~15 ms) makes every
region wait out the spin when another process keeps the other core busy (10x slower). 10000 spins (~0.5 ms)
keep the threads awake through one image and bound that cost. libgomp reads the setting when it starts, i.e. at
the first parallel kernel, so it is set here, when the engine is imported; the user's own settings win.
"""
import os

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"
