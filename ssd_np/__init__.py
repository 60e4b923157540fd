"""ssd_np: TensorFlow's ssd_mobilenet_v2_coco (2018_03_29) reimplemented in NumPy + numba."""

__version__ = "0.1.0"
