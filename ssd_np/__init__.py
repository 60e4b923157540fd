"""ssd_np: TensorFlow's ssd_mobilenet_v2_coco (2018_03_29) reimplemented in NumPy + numba."""
import os

# numba's OpenMP threads (libgomp) wait for the next parallel region by spinning GOMP_SPINCOUNT times, then
# sleep. A forward pass is ~50 regions microseconds apart. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) loses the
# second core on small VMs (a woken thread starts late); libgomp's default 300000 spins (~15 ms) makes every
# region wait out the spin when another process keeps the other core busy (10x slower). 10000 spins (~0.5 ms)
# keep the threads awake through one image and bound that cost. The user's own settings win.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

__version__ = "0.1.0"

from ssd_np.detector import Detector, Detections  # noqa: E402
__all__ = ["Detector", "Detections", "__version__"]
