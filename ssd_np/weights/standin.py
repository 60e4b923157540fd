"""Stand-in weights: seeded values for the release's 344 variables (not the genuine weights).

The genuine float weights of ssd_mobilenet_v2_coco_2018_03_29 are not reachable from the machines this
project is developed on, so the project verifies itself by running *stand-in* weights through the genuine
TF inference graph. A stand-in checkpoint has exactly the release's variable names and shapes (the manifest)
and values drawn from a seed. **Its detections mean nothing**: boxes and classes are arbitrary.

Bit-identical everywhere. Values come from our own counter-based integer generator (splitmix64 of
`(seed, FNV-1a hash of the variable name, element index)`), turned into floats with IEEE operations only
(integer shifts, exact float64 additions, one correctly rounded multiplication, a final rounding to float32).
No libm function (exp, log, sin) is involved, so any machine and any numpy version give the same bytes; a test
pins the sha256 of each documented seed.

Healthy by construction. Every convolution is scaled by its fan-in so activations keep a unit-like scale
through the 17 MobileNetV2 blocks (He scaling before ReLU6, plain 1/sqrt(fan_in) for the linear projections,
residual branches damped), and batch norm statistics are set near identity. The class predictor's biases
decide how many anchors pass the 0.3 score threshold; the two profiles differ there:

- ``sparse`` (seed 1 in the goldens): typically a few tens of detections per image over several classes.
- ``dense`` (seed 2 in the goldens): often more than 100 survivors of per-class NMS, so the 100-detection cap
  and the per-class NMS both matter.

The per-profile constants below were chosen by measuring the genuine graph run in TensorFlow on the COCO
development images (`tools/standin_stats.py` prints the measured statistics).
"""
from __future__ import annotations

import numpy as np

from ssd_np.weights.hdf5 import MANIFEST

GAMMA_BEFORE_RELU6 = 1.4
# Profile constants: (class-bias centre, class-bias spread across classes, class-weight gain).
PROFILES = {
    "sparse": (-5.0, 0.3, 0.5),
    "dense": (-4.1, 0.3, 0.5),
}


def _fnv1a64(text: str) -> int:
    """FNV-1a 64-bit hash of the UTF-8 bytes of `text`."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniform(seed: int, stream: str, n: int, draw: int = 0) -> np.ndarray:
    """`n` float64 values uniform on [0, 1), each an exact multiple of 2**-53."""
    key = (_fnv1a64(stream) ^ (seed * 0xD1B54A32D192ED03) ^ (draw * 0x8CB92BA72F3D8DD7)) & 0xFFFFFFFFFFFFFFFF
    with np.errstate(over="ignore"):
        counters = np.arange(n, dtype=np.uint64) + np.uint64(key)
        bits = _splitmix64(_splitmix64(counters))
    return (bits >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def normal(seed: int, stream: str, n: int) -> np.ndarray:
    """`n` approximately standard-normal float64 values (Irwin-Hall: sum of 4 uniforms, rescaled).

    Sums of four multiples of 2**-53 below 1 are exact in float64, and the final scale is one correctly
    rounded multiplication, so the result is bit-identical on every IEEE machine. Values lie in (-2*sqrt3, 2*sqrt3).
    """
    total = uniform(seed, stream, n, 0) + uniform(seed, stream, n, 1)
    total += uniform(seed, stream, n, 2)
    total += uniform(seed, stream, n, 3)
    return (total - 2.0) * np.sqrt(3.0)


def _fan_in(shape: tuple[int, ...], depthwise: bool) -> int:
    kh, kw, cin, _ = shape
    return kh * kw if depthwise else kh * kw * cin


def _value(seed: int, profile: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float64 values of one variable, before rounding to float32."""
    n = int(np.prod(shape, dtype=np.int64))
    z = normal(seed, name, n)
    bias_centre, bias_spread, class_gain = PROFILES[profile]
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("weights", "depthwise_weights"):
        std = 1.0 / np.sqrt(_fan_in(shape, leaf == "depthwise_weights"))
        if "/BoxPredictor" in "/" + name:
            gain = class_gain if "ClassPredictor" in name else 0.25
        elif "/project/" in name:
            gain = 0.7  # linear bottleneck: no ReLU, residual branch damped
        else:
            gain = np.sqrt(2.0)  # followed by batch norm and ReLU6
        return z * (gain * std)
    if leaf == "gamma":
        # Slightly above the unit fixed point before ReLU6, so activations grow until ReLU6's clip at 6 bites.
        return (1.0 if "/project/" in name else GAMMA_BEFORE_RELU6) + 0.1 * z
    if leaf == "beta":
        return 0.1 * z
    if leaf == "moving_mean":
        return 0.1 * z
    if leaf == "moving_variance":
        return 1.0 + 0.25 * uniform(seed, name, n)
    if leaf == "biases" and "ClassPredictor" in name:
        # (anchors per location * 91): column 0 of each anchor's 91 is background, sliced off by the graph.
        per_class = bias_centre + bias_spread * normal(seed, "class-bias", 91)
        return np.tile(per_class, n // 91) + 0.1 * z
    if leaf == "biases":
        return 0.1 * z
    raise KeyError(f"stand-in weights: no rule for variable {name!r}")


def standin_weights(seed: int, profile: str = "sparse") -> dict[str, np.ndarray]:
    """All 344 float32 variables of the release, stand-in values from `seed`, keyed by TF variable name."""
    if profile not in PROFILES:
        raise ValueError(f"unknown stand-in profile {profile!r}; choose one of {sorted(PROFILES)}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"stand-in seed must be an integer in [0, 2**63), got {seed!r}")
    return {
        name: _value(seed, profile, name, shape).astype(np.float32).reshape(shape)
        for name, shape in MANIFEST.shapes.items()
    }
