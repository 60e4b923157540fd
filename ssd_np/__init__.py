"""ssd_np: TensorFlow's ssd_mobilenet_v2_coco (2018_03_29) reimplemented in NumPy, with a numba engine for speed.

The package in layers, each importing only from the layers before it:

    reference/   the whole graph in plain NumPy, readable top to bottom; it writes the trace (imports only NumPy)
    weights/     TF checkpoints, the HDF5 weights file, the release download, stand-in weights
    engine/      the same graph, fast: numba kernels held to the reference by the tests
    detector.py  the Python API (`Detector`), on the engine;  model.py: the engine's forward pass in one page
    verify/      trace, compare, COCO evaluation
    cli/         the `ssd-np` command
    report/      self-contained HTML pages (`ssd-np explain`), drawn from the reference's trace
(plus the leaf modules `images` (decoding), `coco_labels` and `atomic`, which import nothing of ssd_np.)

`from ssd_np import Detector` loads the engine (and numba) on first use only, so `import ssd_np.reference` stays
plain NumPy.
"""
__version__ = "0.1.0"
__all__ = ["Detector", "Detections", "__version__"]


def __getattr__(name: str):
    if name in ("Detector", "Detections"):
        from ssd_np import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'ssd_np' has no attribute {name!r}")
