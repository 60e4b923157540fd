"""Float32 `exp` and `sigmoid` exactly as the two reference runtimes compute them.

Why not `np.exp`: NumPy's float32 exp differs from TensorFlow's in about 40 % of the values (1-2 ulp) and a
correctly rounded sigmoid differs from TF's in half of them, so scores would not be bit-exact. Each function
below writes out the runtime's own arithmetic, operation by operation in float32 (or float64 where the runtime
uses double):

* `eigen_exp`: Eigen's `pexp_float` (TF 2.17's packet path): clamp x <= 88.723, m = floor(x log2(e) + 1/2),
  r = x - m C1 - m C2 (Cephes' split of ln 2), a degree-6 polynomial p(r), `pldexp(p, m)` (four factors),
  0 below -104. TF's CPU wheel is built without FMA, so every `pmadd(a, b, c)` rounds a*b, then + c.
* `eigen_logistic`: Eigen's `scalar_logistic_op<float>` packet path: x = min(x, 16.6355324) / 2, the same range
  reduction with a degree-5 polynomial, e = (p 2^m)^2, e / (1 + e), 0 below -104.
* `glibc_expf`: glibc's `expf` (2.28+, the x86-64 FMA build): k = round(x 32/ln 2), r = x 32/ln 2 - k,
  2^(k/32) from a 32-entry table, a cubic in r in double, rounded once to float. TF uses it for the scalar
  tail of a tensor, OpenVINO's DetectionOutput (`std::exp`) for every box. Vectorized in float64 without FMA;
  results within 2^-40 of a float32 rounding boundary are recomputed exactly with the build's FMAs.
* `tf_exp` / `tf_sigmoid`: TF's `Exp` / `Sigmoid` kernels (AVX `Packet8f`): the flattened tensor 8 at a time
  by the packet code, its last `size % 8` elements by the scalar code; results flushed to zero (TF sets FTZ).
* `onednn_logistic`: OpenVINO's CPU `Sigmoid` (oneDNN's jit logistic, with true FMA):
  y = exp(-|x|) / (exp(-|x|) + 1), 1 - y for x > 0; exp clamps to [ln FLT_MIN, ln FLT_MAX], reduces with
  r = fma(-n, ln 2, x), evaluates a degree-5 polynomial by FMA and scales by 2 * 2^(n-1).
Each was checked bit for bit against the real runtime (tests/test_box_coder.py).
"""
from __future__ import annotations

from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np

F32, F64 = np.float32, np.float64
TF_PACKET_SIZE = 8  # Eigen's packet of floats on TF's AVX build: Packet8f

# Eigen's constants (GenericPacketMathFunctions.h), shared by the compiled twins in ssd_np.engine.
EXP_HI = F32(88.723)
LOG2E = F32(1.44269504088896341)
CEPHES_C1, CEPHES_C2 = F32(-0.693359375), F32(2.12194440e-4)  # -ln 2 = C1 - C2, applied as m*C1 + x, m*C2 + r
EXP_POLY = tuple(F32(c) for c in (1.37449637986719608306884765625e-3, 4.166965186595916748046875e-2,
                                  8.36894474923610687255859375e-3, 0.16666518151760101318359375,
                                  0.49999988079071044921875))  # p6 p5 | p4 p3 | p2 of pexp_float
LOGISTIC_HI = F32(16.6355324)
LOGISTIC_POLY = tuple(F32(c) for c in (4.1898667812347412109375e-2, 0.49999141693115234375,
                                       8.33471305668354034423828125e-3, 0.16666877269744873046875))
UNDERFLOW = F32(-104.0)  # below it both Eigen functions return 0


def _f32(bits):
    return np.array([bits], dtype=np.uint32).view(F32)[0]


def flush_subnormals(x):
    """Flush-to-zero: subnormal float32 values become (signed) zero."""
    x = np.asarray(x, F32)
    return np.where(np.abs(x) < np.finfo(F32).tiny, np.copysign(F32(0.0), x), x).astype(F32)


def fma32(a, b, c):
    """Single-rounding float32 a*b + c (a true FMA), computed exactly in float64 (TwoSum fixes the ties)."""
    a, b, c = (np.asarray(v, F32).astype(F64) for v in (a, b, c))
    p = a * b  # exact: 24 + 24 bits
    d = p + c
    bb = d - p
    err = (p - (d - bb)) + (c - bb)  # (p + c) - d, exactly
    f = d.astype(F32)
    ff = f.astype(F64)
    other = np.where(ff > d, np.nextafter(f, F32(-np.inf)), np.nextafter(f, F32(np.inf)))
    tie = (ff + other.astype(F64)) * 0.5 == d  # d halfway between two floats, the exact sum is not
    fix = tie & (err != 0)
    return np.where(fix, np.where(err > 0, np.maximum(f, other), np.minimum(f, other)), f).astype(F32)


def _madd(a, b, c):
    """Eigen `pmadd` without FMA: a*b rounded to float32, then + c rounded."""
    return (np.asarray(a, F32) * np.asarray(b, F32)).astype(F32) + np.asarray(c, F32)


def _pow2(e):
    """2^e as float32 for integer arrays e in the normal range [-126, 127] (the exponent field e + 127)."""
    return ((np.asarray(e, np.int32) + 127) << 23).astype(np.int32).view(F32)


def _range_reduce(x):
    """m = floor(x log2(e) + 1/2) and r = x - m ln 2 in two Cephes steps (float32, no FMA)."""
    m = np.floor(_madd(x, LOG2E, F32(0.5)))
    return m, _madd(m, CEPHES_C2, _madd(m, CEPHES_C1, x))


def eigen_exp(x):
    """Eigen `pexp_float` (TF's Exp packets) in float32, without FMA and without flush-to-zero."""
    x = np.asarray(x, F32)
    with np.errstate(all="ignore"):  # inf/NaN lanes run through the same arithmetic, as in the runtime
        m, r = _range_reduce(np.minimum(x, EXP_HI))
        r2 = r * r
        p6, p5, p4, p3, p2 = EXP_POLY
        p_even = _madd(r2, _madd(r2, p6, p5), p2)
        y = _madd(r2, _madd(r, _madd(r2, p4, p3), p_even), r + F32(1.0))
        e = np.clip(np.nan_to_num(np.clip(m, -300, 300)), -278, 278).astype(np.int32)  # pldexp(y, m)
        b = e >> 2
        c = _pow2(b)
        out = ((((y * c).astype(F32) * c).astype(F32) * c).astype(F32) * _pow2(e - 3 * b)).astype(F32)
        return np.where(x < UNDERFLOW, F32(0.0), np.maximum(out, x)).astype(F32)


def eigen_logistic(x):
    """Eigen `scalar_logistic_op<float>` packet path (TF's Sigmoid packets) in float32, without FMA."""
    x = np.asarray(x, F32)
    with np.errstate(all="ignore"):
        m, r = _range_reduce(np.minimum(x, LOGISTIC_HI) * F32(0.5))
        r2 = r * r
        p4, p3, p2, p1 = LOGISTIC_POLY
        p = _madd(r2, _madd(r, _madd(r2, p2, p1), _madd(r2, p4, p3)), r + F32(1.0))
        e = (p * _pow2(np.nan_to_num(np.clip(m, -126, 127)))).astype(F32)
        e = e * e
        return np.where(x < UNDERFLOW, F32(0.0), e / (F32(1.0) + e)).astype(F32)


# --- glibc expf ---------------------------------------------------------------------------------------------

def _glibc_table():
    """tab[i] = bits(2^(i/32)) - (i << 47), with 2^(i/32) correctly rounded to double."""
    getcontext().prec = 40
    two_pow = [float(Decimal(2) ** (Decimal(i) / Decimal(32))) for i in range(32)]
    return np.array(two_pow, F64).view(np.uint64) - (np.arange(32, dtype=np.uint64) << np.uint64(47))


EXPF_TABLE = _glibc_table()
EXPF_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * 32
EXPF_SHIFT = float.fromhex("0x1.8p+52")
EXPF_C0 = float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3
EXPF_C1 = float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2
EXPF_C2 = float.fromhex("0x1.62e42ff0c52d6p-1") / 32
EXPF_OVERFLOW = F32(float.fromhex("0x1.62e42ep6"))  # above: inf
EXPF_UNDERFLOW = F32(-float.fromhex("0x1.9fe368p6"))  # below: 0
# EXPF_INV_LN2_N = HI + LO with a 29-bit HI, so that HI * x is exact for any float32 x (29 + 24 bits).
_INV_LN2_N_HI = float(np.array([int(np.array([EXPF_INV_LN2_N]).view(np.uint64)[0]) >> 24 << 24],
                               np.uint64).view(F64)[0])
_INV_LN2_N_LO = EXPF_INV_LN2_N - _INV_LN2_N_HI


def _fma(a, b, c):
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _glibc_expf_exact(x):
    """One glibc expf with the FMA build's arithmetic (GCC contracts z = x*32/ln2 into both uses), exact FMAs."""
    xd = float(x)
    kd = _fma(EXPF_INV_LN2_N, xd, EXPF_SHIFT)
    ki = int(np.array(kd, F64).view(np.uint64))
    kd -= EXPF_SHIFT
    r = _fma(EXPF_INV_LN2_N, xd, -kd)
    s = float(np.array((int(EXPF_TABLE[ki % 32]) + (ki << 47)) % 2 ** 64, np.uint64).view(F64))
    y = _fma(_fma(EXPF_C0, r, EXPF_C1), r * r, _fma(EXPF_C2, r, 1.0))
    return F32(y * s)


def glibc_expf(x):
    """glibc `expf` (x86-64 FMA build) for float32 arrays, bit-exact."""
    x = np.asarray(x, F32)
    with np.errstate(all="ignore"):
        xd = x.astype(F64)
        hi = _INV_LN2_N_HI * xd  # exact
        lo = _INV_LN2_N_LO * xd
        k = np.rint(hi)
        frac = (hi - k) + lo
        k = k + (frac > 0.5) - (frac < -0.5)
        r = (hi - k) + lo
        ki = (k + EXPF_SHIFT).view(np.uint64)
        s = (EXPF_TABLE[ki % np.uint64(32)] + (ki << np.uint64(47))).view(F64)
        y = ((EXPF_C0 * r + EXPF_C1) * (r * r) + (EXPF_C2 * r + 1.0)) * s
        out = y.astype(F32)
        nearest = out.astype(F64)
        other = np.where(nearest > y, np.nextafter(out, F32(-np.inf)), np.nextafter(out, F32(np.inf)))
        midpoint = (nearest + other.astype(F64)) * 0.5
        in_range = (x <= EXPF_OVERFLOW) & (x >= EXPF_UNDERFLOW)
        for i in np.flatnonzero(in_range & (np.abs(y - midpoint) <= np.abs(y) * 2.0 ** -40)):  # near a tie
            out.flat[i] = _glibc_expf_exact(x.flat[i])
        out = np.where(x > EXPF_OVERFLOW, F32(np.inf), np.where(x < EXPF_UNDERFLOW, F32(0.0), out))
        return np.where(np.isnan(x), x, out).astype(F32)


# --- TF's kernels: packets of 8, then a scalar tail -------------------------------------------------------

def _packet_and_tail(x, packet_fn, scalar_fn):
    flat = np.asarray(x, F32).ravel()
    n_packet = flat.size - flat.size % TF_PACKET_SIZE
    out = np.concatenate([packet_fn(flat[:n_packet]), scalar_fn(flat[n_packet:])])
    return flush_subnormals(out).reshape(np.shape(x))


def eigen_scalar_logistic(x):
    """Eigen `scalar_logistic_op<float>::operator()` (TF's Sigmoid on the tail): e = expf(min(x, hi)), e / (1 + e)."""
    e = glibc_expf(np.minimum(x, LOGISTIC_HI))
    return (e / (F32(1.0) + e)).astype(F32)


def tf_exp(x):
    """TF's `Exp` kernel on a float32 tensor (element order: C order of x)."""
    return _packet_and_tail(x, eigen_exp, glibc_expf)


def tf_sigmoid(x):
    """TF's `Sigmoid` kernel on a float32 tensor (element order: C order of x)."""
    return _packet_and_tail(x, eigen_logistic, eigen_scalar_logistic)


# --- OpenVINO's CPU Sigmoid (oneDNN) ----------------------------------------------------------------------

ONEDNN_LN_FLT_MIN = _f32(0xC2AEAC50)
ONEDNN_LN_FLT_MAX = _f32(0x42B17218)
ONEDNN_LOG2E = _f32(0x3FB8AA3B)
ONEDNN_LN2 = _f32(0x3F317218)
ONEDNN_EXP_POLY = tuple(_f32(b) for b in (0x3C07CFCE, 0x3D2B9D0D, 0x3E2AAD40, 0x3EFFFEE3, 0x3F7FFFFB))  # p5..p1


def onednn_exp(x):
    """oneDNN's jit eltwise `exp` (AVX2/AVX-512, with FMA) in float32."""
    x = np.asarray(x, F32)
    with np.errstate(all="ignore"):
        underflow = x < ONEDNN_LN_FLT_MIN
        x = np.maximum(np.minimum(x, ONEDNN_LN_FLT_MAX), ONEDNN_LN_FLT_MIN)
        n = np.floor((x * ONEDNN_LOG2E).astype(F32) + F32(0.5)).astype(F32)
        r = fma32(-n, ONEDNN_LN2, x)
        scale = np.where(underflow, F32(0.0), _pow2(np.nan_to_num(n - F32(1.0)).astype(np.int32)))
        p = np.full_like(r, ONEDNN_EXP_POLY[0])
        for coefficient in ONEDNN_EXP_POLY[1:] + (F32(1.0),):
            p = fma32(p, r, coefficient)
        return ((p * scale).astype(F32) * F32(2.0)).astype(F32)


def onednn_logistic(x):
    """OpenVINO's CPU `Sigmoid` (oneDNN jit eltwise logistic) in float32."""
    x = np.asarray(x, F32)
    e = onednn_exp(-np.abs(x))
    y = (e / (e + F32(1.0))).astype(F32)
    return np.where(x > 0, F32(1.0) - y, y).astype(F32)
