"""Winograd F(2x2, 3x3) (ssd_np/engine/winograd.py): hand-computed cases, the numba kernels against a NumPy twin
of the same algorithm and against the exact convolution within a rounding-error bound."""
import numpy as np
import pytest

from ssd_np.engine import conv, winograd

U32 = 2.0 ** -24  # float32 unit roundoff


def error_bound(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(cin + 8) * u * the algorithm run on magnitudes (|x|, |w|, |B|, |G|, |A|, |bias|), per output.

    Each output is a sum, over channels, of products of transformed inputs (each rounded in 2 additions) with
    transformed weights (rounded once), accumulated over cin, then transformed back in 4 additions and biased:
    at most cin + 8 roundings along any path, each relative to the magnitudes that flow through it."""
    h, wd, cin = x.shape
    ty, tx = (h + 1) // 2, (wd + 1) // 2
    xp = np.zeros((2 * ty + 2, 2 * tx + 2, cin))
    xp[1:h + 1, 1:wd + 1] = np.abs(x)
    d = np.stack([xp[2 * i:2 * i + 4, 2 * j:2 * j + 4] for i in range(ty) for j in range(tx)])
    b_t, g, a_t = np.abs(winograd.B_T), np.abs(winograd.G), np.abs(winograd.A_T)
    v = np.einsum("ai,tijc,bj->tabc", b_t, d, b_t)
    u = np.einsum("ai,ijcn,bj->abcn", g, np.abs(w.astype(np.float64)), g)
    y = np.einsum("ia,tabn,jb->tijn", a_t, np.einsum("tabc,abcn->tabn", v, u), a_t)
    y = y.reshape(ty, tx, 2, 2, -1).transpose(0, 2, 1, 3, 4).reshape(2 * ty, 2 * tx, -1)[:h, :wd]
    return (cin + 8) * U32 * (y + np.abs(bias)) + 1e-30


def exact(x, w, bias):
    """The convolution in float64 (not rounded)."""
    xp = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    h, wd, _ = x.shape
    return sum(xp[ky:ky + h, kx:kx + wd] @ w[ky, kx].astype(np.float64) for ky in range(3) for kx in range(3)) + bias


def winograd_numpy(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The engine's algorithm in float32 NumPy (its twin, slow): Winograd F(2x2, 3x3) of x (H, W, cin) with
    w (3, 3, cin, cout), plus bias."""
    h, wd, cin = x.shape
    tiles_y, tiles_x = (h + 1) // 2, (wd + 1) // 2
    xp = np.zeros((2 * tiles_y + 2, 2 * tiles_x + 2, cin), np.float32)
    xp[1:h + 1, 1:wd + 1] = x
    d = np.stack([xp[2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] for ty in range(tiles_y) for tx in range(tiles_x)])
    b_t, a_t = winograd.B_T.astype(np.float32), winograd.A_T.astype(np.float32)
    v = np.einsum("ai,tijc,bj->tabc", b_t, d, b_t)  # (tiles, 4, 4, cin)
    u = np.stack([np.stack([winograd.transform_weights(w, a, b) for b in range(4)]) for a in range(4)])  # (4, 4, cin, cout)
    m = np.einsum("tabc,abcn->tabn", v, u)  # (tiles, 4, 4, cout)
    y = np.einsum("ia,tabn,jb->tijn", a_t, m, a_t)  # (tiles, 2, 2, cout)
    y = y.reshape(tiles_y, tiles_x, 2, 2, -1).transpose(0, 2, 1, 3, 4).reshape(2 * tiles_y, 2 * tiles_x, -1)
    return y[:h, :wd] + bias


# --- hand-computed -------------------------------------------------------------------------------------------

def test_transform_weights_hand():
    # G's rows sum to 1, 3/2, 1/2, 1: for an all-ones kernel U = outer(row sums, row sums)
    g = np.ones((3, 3, 1, 1), np.float32)
    u = np.array([[winograd.transform_weights(g, a, b)[0, 0] for b in range(4)] for a in range(4)])
    s = np.array([1.0, 1.5, 0.5, 1.0])
    np.testing.assert_array_equal(u, np.outer(s, s))


def test_box_sums_hand():
    # an all-ones kernel sums each 3x3 neighbourhood (SAME: zeros outside); small integers are exact in float32
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    wg = winograd.prepare(np.ones((3, 3, 1, 1), np.float32), np.array([0.5], np.float32))
    expected = np.array([[12, 21, 16], [27, 45, 33], [24, 39, 28]], np.float32) + 0.5
    np.testing.assert_array_equal(winograd.conv3x3_bias(x, wg)[:, :, 0], expected)
    np.testing.assert_array_equal(winograd_numpy(x, np.ones((3, 3, 1, 1), np.float32),
                                                            np.array([0.5], np.float32))[:, :, 0], expected)


def test_single_tap_shifts():
    # a kernel with one tap (ky, kx) = 1 shifts the image by (ky - 1, kx - 1), zeros entering: exact
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 8, (5, 7, 3)).astype(np.float32)
    for ky in range(3):
        for kx in range(3):
            w = np.zeros((3, 3, 3, 3), np.float32)
            w[ky, kx] = np.eye(3)
            out = winograd.conv3x3_bias(x, winograd.prepare(w, np.zeros(3, np.float32)))
            np.testing.assert_array_equal(out, exact(x, w, 0.0).astype(np.float32))


def test_bad_input_raises():
    wg = winograd.prepare(np.ones((3, 3, 4, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="4 input channels"):
        winograd.conv3x3_bias(np.ones((5, 5, 3), np.float32), wg)
    with pytest.raises(ValueError, match="float32"):
        winograd.conv3x3_bias(np.ones((5, 5, 4), np.float64), wg)
    with pytest.raises(ValueError, match="3, 3, cin, cout"):
        winograd.prepare(np.ones((1, 1, 4, 2), np.float32), np.zeros(2, np.float32))


# --- numba kernels against the twin and the exact sums ---------------------------------------------------------

@pytest.mark.parametrize("h, w, cin, cout", [
    (1, 1, 16, 5), (3, 3, 7, 9), (7, 5, 33, 40), (2, 5, 16, 33), (4, 4, 1, 1), (11, 13, 19, 64),
    (19, 19, 57, 45), (10, 10, 130, 70), (5, 5, 64, 100),
])
def test_conv3x3_bias_vs_twin_and_exact(h, w, cin, cout):
    rng = np.random.default_rng(h * 100 + cin)
    x = rng.standard_normal((h, w, cin)).astype(np.float32)
    weights = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    out = winograd.conv3x3_bias(x, winograd.prepare(weights, bias))
    twin = winograd_numpy(x, weights, bias)
    ref = exact(x, weights, bias)
    bound = error_bound(x, weights, bias)
    direct = conv.conv_bn_act(x, conv.prepare_conv(weights, np.ones(cout, np.float32), bias), 1, False)
    err, err_twin, err_direct = (np.abs(a.astype(np.float64) - ref) for a in (out, twin, direct))
    print(f"winograd {h}x{w}x{cin}->{cout}: max diff to exact {err.max():.2e} (twin {err_twin.max():.2e}, "
          f"direct sum {err_direct.max():.2e}), max diff/bound {(err / bound).max():.3f}, "
          f"max diff to twin {np.abs(out - twin).max():.2e}")
    assert out.shape == (h, w, cout)
    assert (err <= bound).all()
    assert (err_twin <= bound).all()
