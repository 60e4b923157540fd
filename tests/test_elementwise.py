"""The compiled elementwise kernels (``ssd_np.engine.elementwise``) against their reference twins
(``ssd_np.reference.tf_math``), bit for bit.

The twins themselves are checked against the real runtimes in test_box_coder.py; here every compiled function
must give the same float32 bits as its twin (NaN compared as NaN) on: the runtimes' own inputs, special values,
a sweep over the whole float32 range, the logits and box encodings of every golden, odd sizes (TF's scalar tail is
the last ``size % 8`` elements) and stride-2 views. Each test prints the largest difference (0 ulp).
"""
import numpy as np
import pytest

from conftest import DATA
from golden import golden_files, load_golden
from ssd_np.engine import elementwise
from ssd_np.reference import tf_math

F32 = np.float32
PAIRS = {name: (getattr(elementwise, name), getattr(tf_math, name))  # compiled kernel, NumPy twin
         for name in ("tf_exp", "tf_sigmoid", "glibc_expf", "onednn_logistic")}
RUNTIME_KEYS = {"tf_exp": "tf_exp", "tf_sigmoid": "tf_sigmoid", "glibc_expf": "libm_expf",
                "onednn_logistic": "ov_sigmoid"}
SPECIALS = F32([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-39, -1e-39, np.finfo(F32).tiny,
                np.finfo(F32).max, -np.finfo(F32).max, 88.72, 88.723, 88.73, 88.7228394, 88.7228470, -87.33, -87.34,
                -87.5, -103.97, -103.972, -104.0, -104.1, 16.6355324, 16.64, -16.6355324, 33.27, 200.0, -200.0])


def ulp_difference(ours, ref):
    """Largest distance in float32 ulps (NaN against NaN counts as 0); ``inf`` when one side alone is NaN."""
    ours, ref = np.asarray(ours, F32).ravel(), np.asarray(ref, F32).ravel()
    assert ours.shape == ref.shape
    both_nan = np.isnan(ours) & np.isnan(ref)
    if np.any(np.isnan(ours) != np.isnan(ref)):
        return np.inf
    def ordered(v):  # float32 bits as integers with the same order as the floats
        bits = v.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    diff = np.abs(ordered(ours) - ordered(ref))
    return int(np.max(np.where(both_nan, 0, diff), initial=0))


def check(name, x):
    fast, twin = PAIRS[name]
    ours, ref = fast(x), twin(x)
    assert ours.shape == ref.shape == np.shape(x) and ours.dtype == F32
    worst = ulp_difference(ours, ref)
    same = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
    assert worst == 0 and same.all(), (f"{name}: {np.sum(~same)} of {ours.size} values differ, "
                                       f"e.g. at x = {np.ravel(x)[~same.ravel()][:5]}")
    return worst


@pytest.mark.parametrize("name", PAIRS)
def test_fast_equals_runtime_values(name):
    reference = np.load(DATA / "postprocess" / "elementwise.npz")
    x = reference["x"]
    ours = PAIRS[name][0](x)
    worst = ulp_difference(ours, reference[RUNTIME_KEYS[name]])
    print(f"compiled {name} against the real runtime on {len(x)} values: max difference {worst} ulp")
    assert worst == 0
    assert check(name, x) == 0


@pytest.mark.parametrize("name", PAIRS)
def test_fast_equals_twin_on_special_values(name):
    worst = max(check(name, SPECIALS), check(name, -SPECIALS))
    print(f"{name}: special values, max difference {worst} ulp")


@pytest.mark.parametrize("name", PAIRS)
def test_fast_equals_twin_over_the_float32_range(name):
    """Every 4099th bit pattern (all signs and exponents, NaNs and infinities included) and dense random draws
    where the functions are not constant."""
    sweep = np.arange(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32).view(F32)
    rng = np.random.default_rng(7)
    dense = np.concatenate([rng.normal(0, 30, 100_003), rng.uniform(-110, 110, 100_000)]).astype(F32)
    worst = max(check(name, sweep), check(name, dense))
    print(f"{name}: {sweep.size + dense.size} values, max difference {worst} ulp")


@pytest.mark.parametrize("name", PAIRS)
def test_fast_equals_twin_on_odd_sizes_and_strides(name):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 8, 2 * 8 * 5 + 13).astype(F32)
    worst = 0
    for size in list(range(0, 26)) + [8 * 5 + 7, 8 * 40 + 1]:
        worst = max(worst, check(name, x[:size]))
    strided = x[::2]  # stride 2, 43 elements
    worst = max(worst, check(name, strided), check(name, x.reshape(3, 31)[:, ::2]))
    print(f"{name}: sizes 0..25, 47, 321, stride 2: max difference {worst} ulp")


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fast_equals_twin_on_golden_tensors(path):
    """Exactly the inputs post-processing gives these functions for the goldens."""
    golden, _ = load_golden(path)
    tf_encodings = golden["concat"].reshape(1917, 4)
    ov_encodings = golden["openvino/box_encodings"]
    worst = max(check("tf_sigmoid", golden["concat_1"].reshape(1917, 91)),
                check("tf_exp", tf_encodings[:, 3] / F32(5.0)), check("tf_exp", tf_encodings[:, 2] / F32(5.0)),
                check("onednn_logistic", golden["openvino/class_logits"]),
                check("glibc_expf", F32(0.2) * ov_encodings[:, 3]), check("glibc_expf", F32(0.2) * ov_encodings[:, 2]))
    print(f"max difference {worst} ulp")


@pytest.mark.parametrize("x, bits", [(32.564632, 0x56FC9F1C), (-63.09946, 0x11FA2993)])
def test_glibc_expf_fast_near_ties(x, bits):
    """Inputs where glibc's FMA build rounds differently from the same algorithm without FMA (system expf)."""
    expected = np.array([bits], np.uint32).view(F32)[0]
    assert elementwise.glibc_expf(np.array([x], F32))[0] == expected
