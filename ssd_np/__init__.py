"""ssd_np: TensorFlow's ssd_mobilenet_v2_coco (2018_03_29) reimplemented in NumPy + numba."""
import os

# numba's OpenMP threads spin while waiting by default; when the other core is busy that made a 2-thread
# forward pass 10x slower (572 ms vs 49 ms median at load 2). Passive waiting, unless the user chose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from ssd_np.detector import Detector, Detections  # noqa: E402
__all__ = ["Detector", "Detections", "__version__"]
