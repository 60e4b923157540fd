"""Box decoding, sigmoid scores and the bit-exact elementwise functions behind them.

Layers: hand-computed decodings and float rules; the emulated exp/sigmoid against values the real runtimes
produced (elementwise.npz); decoded boxes and scores of every post-processing fixture against TF's graph nodes
``Postprocessor/Decode/transpose_1`` and ``Postprocessor/convert_scores``.
"""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ssd_np.reference import anchors, box_coder, tf_math

F32 = np.float32
DATA = Path(__file__).parent / "data" / "postprocess"
CASES = sorted(p.stem for p in DATA.glob("*.npz") if p.stem not in ("references", "elementwise"))


def _bits_report(name, ours, ref, x=None):
    ours, ref = np.asarray(ours).ravel(), np.asarray(ref).ravel()
    bad = np.flatnonzero(~((ours == ref) | (np.isnan(ours) & np.isnan(ref))))
    lines = [f"{name}: {len(bad)} of {ours.size} values differ"]
    for i in bad[:8]:
        ulps = int(np.array(ours[i], F32).view(np.int32)) - int(np.array(ref[i], F32).view(np.int32))
        lines.append(f"  [{i}] x={x[i] if x is not None else ''!r} ours={ours[i]!r} ref={ref[i]!r} ({ulps:+d} ulp)")
    return "\n".join(lines)


def assert_bit_exact(name, ours, ref, x=None):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    same = (ours == ref) | (np.isnan(ours) & np.isnan(ref))
    assert same.all(), _bits_report(name, ours, ref, x)


# --- hand-computed ------------------------------------------------------------------------------------------

def test_decode_known_encoding():
    # anchor [0.2, 0.3, 0.6, 0.5]: ha 0.4, wa 0.2, centre (0.4, 0.4)
    # ty 1 -> yc 0.4 + 0.1*0.4 = 0.44; tx -2 -> xc 0.4 - 0.2*0.2 = 0.36; th 5 ln 2 -> h 0.8; tw 0 -> w 0.2
    anchor = np.array([[0.2, 0.3, 0.6, 0.5]], F32)
    encoding = np.array([[1.0, -2.0, 5 * np.log(2.0), 0.0]], F32)
    np.testing.assert_allclose(box_coder.decode(encoding, anchor, {}), [[0.04, 0.26, 0.84, 0.46]], atol=1e-6)


def test_decode_zero_encoding_gives_the_anchor():
    table = anchors.ssd_anchors()
    np.testing.assert_allclose(box_coder.decode(np.zeros_like(table), table, {}), table, atol=6e-8)


def test_decode_divides_by_the_scale_factors():
    """ty / 10 is a real division (RealDiv), which differs from ty * 0.1 for some ty."""
    ty = np.float32(np.arange(1, 2000)) * F32(0.37)
    anchor = np.tile(np.array([[-0.5, -0.5, 0.5, 0.5]], F32), (len(ty), 1))  # ha = 1, centre 0
    encoding = np.zeros((len(ty), 4), F32)
    encoding[:, 0] = ty
    encoding[:, 2] = -600.0  # h = exp(-120) * 1 = 0, so ymin = yc = ty / 10
    ymin = box_coder.decode(encoding, anchor, {})[:, 0]
    np.testing.assert_array_equal(ymin, ty / F32(10))
    assert np.any(ymin != ty * F32(0.1))


def test_decode_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        box_coder.decode(np.zeros((1, 1917, 1, 4), F32), anchors.ssd_anchors(), {})


def test_scores_trace_and_background_slice():
    logits = np.zeros((1917, 91), F32)
    logits[5, 0] = 3.0
    trace = {}
    scores = box_coder.scores(logits, trace)
    assert scores[0, 0] == F32(0.5)
    assert trace["Postprocessor/convert_scores"].shape == (1, 1917, 91)
    assert trace["Postprocessor/Slice"].shape == (1, 1917, 90)
    assert trace["Postprocessor/Slice"][0, 5, 0] == F32(0.5)


def _round_to_f32(q):
    """Correctly rounded float32 of an exact rational (ties to even)."""
    guess = np.float32(float(q))
    candidates = [np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - q), int(np.array(c).view(np.int32)) & 1))


def test_fma32_rounds_once():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 2, 20000).astype(F32)
    b = rng.uniform(0.5, 2, 20000).astype(F32)
    c = (-(a.astype(np.float64) * b) * (1 + rng.uniform(-1e-6, 1e-6, 20000))).astype(F32)  # cancellation
    ours = tf_math.fma32(a, b, c)
    exact = [_round_to_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))) for x, y, z in zip(a, b, c)]
    assert_bit_exact("fma32", ours, np.array(exact, F32))


def test_tf_kernels_use_the_scalar_path_on_the_last_size_mod_8_elements():
    x = np.linspace(-3, 3, 8 * 5 + 7, dtype=F32)
    np.testing.assert_array_equal(tf_math.tf_exp(x)[:40], tf_math.eigen_exp(x[:40]))
    np.testing.assert_array_equal(tf_math.tf_exp(x)[40:], tf_math.glibc_expf(x[40:]))
    np.testing.assert_array_equal(tf_math.tf_sigmoid(x)[40:], tf_math.eigen_scalar_logistic(x[40:]))


def test_tf_kernels_flush_subnormals():
    assert tf_math.tf_exp(np.array([-87.5], F32))[0] == 0  # exp(-87.5) ~ 1e-38 is subnormal
    assert tf_math.eigen_exp(np.array([-87.5], F32))[0] > 0


# glibc expf (FMA build) at inputs where the same algorithm without FMA rounds the other way; values from the
# system expf.
GLIBC_NEAR_TIES = [(32.564632, 0x56FC9F1C), (-63.09946, 0x11FA2993)]


@pytest.mark.parametrize("x, bits", GLIBC_NEAR_TIES)
def test_glibc_expf_near_ties(x, bits):
    expected = np.array([bits], np.uint32).view(F32)[0]
    assert tf_math.glibc_expf(np.array([x], F32))[0] == expected


# --- against the real runtimes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def elementwise_reference():
    return np.load(DATA / "elementwise.npz")


@pytest.mark.parametrize("name, ours", [
    ("tf_exp", tf_math.tf_exp),
    ("tf_sigmoid", tf_math.tf_sigmoid),
    ("ov_sigmoid", tf_math.onednn_logistic),
    ("libm_expf", tf_math.glibc_expf),
])
def test_elementwise_bit_exact_with_runtime(elementwise_reference, name, ours):
    x = elementwise_reference["x"]
    assert len(x) % 8 == 7  # TF's scalar tail is part of the comparison
    assert_bit_exact(name, ours(x), elementwise_reference[name], x)


def test_numpy_exp_is_not_tf_exp(elementwise_reference):
    """Why reference/tf_math.py exists: numpy's float32 exp disagrees with TF's on many values (measured here)."""
    x = elementwise_reference["x"]
    packet = slice(0, len(x) - len(x) % 8)
    with np.errstate(over="ignore"):
        differ = np.mean(np.exp(x[packet]) != elementwise_reference["tf_exp"][packet])
    print(f"numpy float32 exp differs from TF's Exp on {differ:.1%} of {len(x)} values")
    assert differ > 0


@pytest.mark.parametrize("case", CASES)
def test_decoded_boxes_and_scores_bit_exact_with_tf(case):
    data = np.load(DATA / f"{case}.npz")
    trace = {}
    decoded = box_coder.decode(data["box_encodings"], anchors.ssd_anchors(), trace)
    assert_bit_exact(f"{case} Postprocessor/Decode/transpose_1", decoded, data["tf_decoded_boxes"])
    assert_bit_exact(f"{case} Postprocessor/convert_scores", box_coder.scores(data["class_logits"], {})[None],
                     data["tf_scores"])
