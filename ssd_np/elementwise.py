"""Bit-exact float32 ``exp`` and ``sigmoid`` as the two reference runtimes compute them.

numpy's own float32 ``exp`` differs from TensorFlow's in about 40 % of the values (1-2 ulp) and a
correctly rounded sigmoid differs from TF's in half of them, so the post-processing reproduces the
reference arithmetic instead:

* ``eigen_exp``: Eigen's ``pexp_float`` (GenericPacketMathFunctions.h, the version in TF 2.17): clamp
  ``x <= 88.723``, ``m = floor(x*log2(e) + 1/2)``, ``r = x - m*C1 - m*C2`` (Cephes split of ln 2), a degree-6
  minimax polynomial ``p(r)``, ``pldexp(p, m)`` (four-factor ldexp), 0 below -104. The TF 2.17 CPU wheel is
  built with AVX but without FMA, so every ``pmadd(a, b, c)`` is ``a*b`` rounded then ``+ c`` rounded.
* ``eigen_logistic``: Eigen's ``scalar_logistic_op<float>`` packet path: ``x = min(x, 16.6355324) / 2``, the same
  range reduction with a degree-5 polynomial, ``e = (p * 2^m)^2``, ``e / (1 + e)``, 0 below -104.
* ``glibc_expf``: glibc's ``expf`` (2.28+, Szabolcs Nagy's algorithm, the x86-64 FMA variant): ``k = round(x *
  32/ln 2)``, ``r = x*32/ln 2 - k``, ``2^(k/32)`` from a 32-entry table, a cubic in ``r`` evaluated in double,
  rounded once to float. TF's kernels use it for the scalar tail of a tensor, OpenVINO's DetectionOutput
  (``std::exp``) for every box. Vectorized in float64 without FMA; the few results within 2^-40 of a float32
  rounding boundary are recomputed exactly (``fractions.Fraction``) with the FMA contractions of the real build.
* ``tf_exp`` / ``tf_sigmoid``: TF's ``Exp`` / ``Sigmoid`` kernels (Eigen TensorExecutor, AVX ``Packet8f``): the
  flattened tensor is evaluated 8 at a time by the packet code and its last ``size % 8`` elements by the scalar
  code (``expf``; for the sigmoid ``e = expf(min(x, 16.6355324)); e / (1 + e)``). TF runs its kernels with
  flush-to-zero, so subnormal results become 0.
* ``onednn_logistic``: OpenVINO's CPU ``Sigmoid`` (oneDNN ``jit_uni_eltwise_injector`` logistic on AVX2/AVX-512,
  with true FMA): ``y = exp(-|x|) / (exp(-|x|) + 1)``, ``1 - y`` for ``x > 0``, where ``exp`` clamps to
  [ln FLT_MIN, ln FLT_MAX], reduces with ``r = fma(-n, ln2, x)``, evaluates a degree-5 polynomial by FMA and
  scales by ``2 * 2^(n-1)``.

All were checked bit for bit against the real runtimes (tests/test_box_coder.py, fixtures made by
tools/make_postprocess_cases.py); ``glibc_expf`` also against the system ``expf`` (glibc 2.36) for every float32
in [-200, 200].

Post-processing calls the compiled twins ``tf_exp_fast``, ``tf_sigmoid_fast``, ``glibc_expf_fast`` and
``onednn_logistic_fast`` (numba, one element at a time, the same operations in the same order: no fast-math, so
LLVM never fuses ``a*b + c``; the real FMAs of glibc and oneDNN are ``llvm.fma``, which rounds once by
definition, where the NumPy functions emulate it in float64). tests/test_elementwise.py checks that they give the
same bits as the NumPy functions.
"""

from decimal import Decimal, getcontext
from fractions import Fraction

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

F32 = np.float32
F64 = np.float64

# TF's Eigen packet width for float on an AVX build: Packet8f.
TF_PACKET_SIZE = 8


def _ignore_fp_warnings(fn):
    """Inf/NaN inputs run through the same arithmetic as the runtimes; their masked lanes may warn."""
    def wrapped(x):
        with np.errstate(all="ignore"):
            return fn(x)
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _f32(bits):
    return np.array([bits], dtype=np.uint32).view(F32)[0]


def flush_subnormals(x):
    """Flush-to-zero: subnormal float32 values become (signed) zero, as under the FTZ flag TF sets."""
    x = np.asarray(x, F32)
    return np.where(np.abs(x) < np.finfo(F32).tiny, np.copysign(F32(0.0), x), x).astype(F32)


def fma32(a, b, c):
    """Single-rounding float32 ``a*b + c`` (a true FMA), computed exactly with float64."""
    a = np.asarray(a, F32).astype(F64)
    b = np.asarray(b, F32).astype(F64)
    c = np.asarray(c, F32).astype(F64)
    p = a * b  # exact: 24 + 24 bits
    d = p + c
    # TwoSum: err = (p + c) - d exactly.
    bb = d - p
    err = (p - (d - bb)) + (c - bb)
    f = d.astype(F32)
    ff = f.astype(F64)
    other = np.where(ff > d, np.nextafter(f, F32(-np.inf)), np.nextafter(f, F32(np.inf)))
    # d exactly halfway between two floats, but the exact sum is not: round towards the exact sum.
    tie = (ff + other.astype(F64)) * 0.5 == d
    fix = tie & (err != 0)
    up = np.maximum(f, other)
    down = np.minimum(f, other)
    return np.where(fix, np.where(err > 0, up, down), f).astype(F32)


def _madd(a, b, c):
    """Eigen ``pmadd`` without FMA: ``a*b`` rounded to float32, then ``+ c`` rounded."""
    return (np.asarray(a, F32) * np.asarray(b, F32)).astype(F32) + np.asarray(c, F32)


def _pow2(e):
    """2^e as float32 for integer arrays e in the normal range [-126, 127]."""
    return ((np.asarray(e, np.int32) + 127) << 23).astype(np.int32).view(F32)


def _eigen_ldexp(a, m):
    """Eigen ``pldexp_generic``: a * 2^m as ((a * 2^b) * 2^b) * 2^b * 2^(m - 3b), b = floor(m/4)."""
    e = np.clip(m, -278, 278).astype(np.int32)
    b = e >> 2
    c = _pow2(b)
    out = ((a * c).astype(F32) * c).astype(F32) * c
    return (out.astype(F32) * _pow2(e - 3 * b)).astype(F32)


@_ignore_fp_warnings
def eigen_exp(x):
    """Eigen ``pexp_float`` (packet path of TF's Exp) in float32, without FMA, without flush-to-zero."""
    x = np.asarray(x, F32)
    x_clamped = np.minimum(x, F32(88.723))
    m = np.floor(_madd(x_clamped, F32(1.44269504088896341), F32(0.5)))
    r = _madd(m, F32(-0.693359375), x_clamped)
    r = _madd(m, F32(2.12194440e-4), r)
    r2 = r * r
    p_even = _madd(r2, F32(1.37449637986719608306884765625e-3), F32(4.166965186595916748046875e-2))
    p_odd = _madd(r2, F32(8.36894474923610687255859375e-3), F32(0.16666518151760101318359375))
    p_even = _madd(r2, p_even, F32(0.49999988079071044921875))
    p_low = r + F32(1.0)
    y = _madd(r, p_odd, p_even)
    y = _madd(r2, y, p_low)
    out = np.maximum(_eigen_ldexp(y, np.nan_to_num(np.clip(m, -300, 300)).astype(np.int32)), x)
    return np.where(x < F32(-104.0), F32(0.0), out).astype(F32)


@_ignore_fp_warnings
def eigen_logistic(x):
    """Eigen ``scalar_logistic_op<float>`` packet path (TF's Sigmoid) in float32, without FMA."""
    x = np.asarray(x, F32)
    half_x = np.minimum(x, F32(16.6355324)) * F32(0.5)
    m = np.floor(_madd(half_x, F32(1.44269504088896341), F32(0.5)))
    r = _madd(m, F32(-0.693359375), half_x)
    r = _madd(m, F32(2.12194440e-4), r)
    r2 = r * r
    p_even = _madd(r2, F32(4.1898667812347412109375e-2), F32(0.49999141693115234375))
    p_odd = _madd(r2, F32(8.33471305668354034423828125e-3), F32(0.16666877269744873046875))
    p_low = r + F32(1.0)
    p = _madd(r, p_odd, p_even)
    p = _madd(r2, p, p_low)
    e = (p * _pow2(np.nan_to_num(np.clip(m, -126, 127)))).astype(F32)
    e = e * e
    return np.where(x < F32(-104.0), F32(0.0), e / (F32(1.0) + e)).astype(F32)


# --- glibc expf -------------------------------------------------------------------------------------------

def _glibc_table():
    """tab[i] = bits(2^(i/32)) - (i << 47), with 2^(i/32) correctly rounded to double."""
    getcontext().prec = 40
    two_pow = [float(Decimal(2) ** (Decimal(i) / Decimal(32))) for i in range(32)]
    bits = np.array(two_pow, F64).view(np.uint64)
    return bits - (np.arange(32, dtype=np.uint64) << np.uint64(47))


_EXP_TABLE = _glibc_table()
_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * 32
_SHIFT = float.fromhex("0x1.8p+52")
_C0 = float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3
_C1 = float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2
_C2 = float.fromhex("0x1.62e42ff0c52d6p-1") / 32


def _drop_low_bits(value, n_bits):
    """``value`` with the lowest ``n_bits`` bits of its float64 mantissa cleared."""
    bits = int(np.array([value], F64).view(np.uint64)[0])
    return float(np.array([bits >> n_bits << n_bits], np.uint64).view(F64)[0])


# _INV_LN2_N = HI + LO with a 29-bit HI, so that HI * x is exact for any float32 x (29 + 24 bits).
_INV_LN2_N_HI = _drop_low_bits(_INV_LN2_N, 24)
_INV_LN2_N_LO = _INV_LN2_N - _INV_LN2_N_HI
_OVERFLOW_X = F32(float.fromhex("0x1.62e42ep6"))
_UNDERFLOW_X = F32(-float.fromhex("0x1.9fe368p6"))


def _fma(a, b, c):
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _glibc_expf_exact(x):
    """One glibc expf, FMA build (GCC contracts z = x*32/ln2 into both uses), with exact FMAs."""
    xd = float(x)
    kd = _fma(_INV_LN2_N, xd, _SHIFT)
    ki = int(np.array(kd, F64).view(np.uint64))
    kd -= _SHIFT
    r = _fma(_INV_LN2_N, xd, -kd)
    t = (int(_EXP_TABLE[ki % 32]) + (ki << 47)) % 2 ** 64
    s = float(np.array(t, np.uint64).view(F64))
    z = _fma(_C0, r, _C1)
    y = _fma(_C2, r, 1.0)
    y = _fma(z, r * r, y)
    return F32(y * s)


@_ignore_fp_warnings
def glibc_expf(x):
    """glibc ``expf`` (x86-64 FMA variant) for float32 arrays, bit-exact."""
    x = np.asarray(x, F32)
    xd = x.astype(F64)
    hi = _INV_LN2_N_HI * xd  # exact
    lo = _INV_LN2_N_LO * xd
    k = np.rint(hi)
    frac = (hi - k) + lo
    k = k + (frac > 0.5) - (frac < -0.5)
    r = (hi - k) + lo
    ki = (k + _SHIFT).view(np.uint64)
    s = (_EXP_TABLE[ki % np.uint64(32)] + (ki << np.uint64(47))).view(F64)
    z = _C0 * r + _C1
    y = _C2 * r + 1.0
    y = (z * (r * r) + y) * s
    out = y.astype(F32)
    nearest = out.astype(F64)
    other = np.where(nearest > y, np.nextafter(out, F32(-np.inf)), np.nextafter(out, F32(np.inf)))
    midpoint = (nearest + other.astype(F64)) * 0.5
    in_range = (x <= _OVERFLOW_X) & (x >= _UNDERFLOW_X)
    near_tie = in_range & (np.abs(y - midpoint) <= np.abs(y) * 2.0 ** -40)
    for i in np.flatnonzero(near_tie):
        out.flat[i] = _glibc_expf_exact(x.flat[i])
    out = np.where(x > _OVERFLOW_X, F32(np.inf), out)
    out = np.where(x < _UNDERFLOW_X, F32(0.0), out)
    return np.where(np.isnan(x), x, out).astype(F32)


# --- TF kernels (packet body + scalar tail) ---------------------------------------------------------------

def _packet_and_tail(x, packet_fn, scalar_fn):
    flat = np.asarray(x, F32).ravel()
    n_packet = flat.size - flat.size % TF_PACKET_SIZE
    out = np.concatenate([packet_fn(flat[:n_packet]), scalar_fn(flat[n_packet:])])
    return flush_subnormals(out).reshape(np.shape(x))


def eigen_scalar_logistic(x):
    """Eigen ``scalar_logistic_op<float>::operator()`` (TF's Sigmoid on the tail): ``e / (1 + e)``."""
    e = glibc_expf(np.minimum(x, F32(16.6355324)))
    return (e / (F32(1.0) + e)).astype(F32)


def tf_exp(x):
    """TF's ``Exp`` kernel on a float32 tensor (element order = C order of ``x``)."""
    return _packet_and_tail(x, eigen_exp, glibc_expf)


def tf_sigmoid(x):
    """TF's ``Sigmoid`` kernel on a float32 tensor (element order = C order of ``x``)."""
    return _packet_and_tail(x, eigen_logistic, eigen_scalar_logistic)


# --- OpenVINO CPU Sigmoid (oneDNN) ------------------------------------------------------------------------

_LN_FLT_MIN = _f32(0xC2AEAC50)
_LN_FLT_MAX = _f32(0x42B17218)
_LOG2E = _f32(0x3FB8AA3B)
_LN2 = _f32(0x3F317218)
_EXP_POLY = [_f32(b) for b in (0x3C07CFCE, 0x3D2B9D0D, 0x3E2AAD40, 0x3EFFFEE3, 0x3F7FFFFB)]  # p5 .. p1


@_ignore_fp_warnings
def onednn_exp(x):
    """oneDNN's jit eltwise ``exp`` (AVX2/AVX-512, with FMA) in float32."""
    x = np.asarray(x, F32)
    underflow = x < _LN_FLT_MIN
    x = np.maximum(np.minimum(x, _LN_FLT_MAX), _LN_FLT_MIN)
    n = np.floor((x * _LOG2E).astype(F32) + F32(0.5)).astype(F32)
    r = fma32(-n, _LN2, x)
    scale = np.where(underflow, F32(0.0), _pow2(np.nan_to_num(n - F32(1.0)).astype(np.int32)))
    p = np.full_like(r, _EXP_POLY[0])
    for coefficient in _EXP_POLY[1:] + [F32(1.0)]:
        p = fma32(p, r, coefficient)
    return ((p * scale).astype(F32) * F32(2.0)).astype(F32)


def onednn_logistic(x):
    """OpenVINO CPU ``Sigmoid`` (oneDNN jit eltwise logistic) in float32."""
    x = np.asarray(x, F32)
    e = onednn_exp(-np.abs(x))
    y = (e / (e + F32(1.0))).astype(F32)
    return np.where(x > 0, F32(1.0) - y, y).astype(F32)


# --- compiled twins -----------------------------------------------------------------------------------------
# The same float32/float64 operation sequences as the NumPy functions above, one element at a time in numba
# (``_name1`` computes one element of ``name``; tests/test_elementwise.py compares them bit for bit). numba sets
# no fast-math flags, so LLVM never contracts ``a*b + c``: plain arithmetic rounds exactly as NumPy does, and a
# true FMA is ``llvm.fma``, which rounds once by definition (a libm call on a CPU without FMA; the NumPy side
# emulates it in float64: ``fma32``, ``_glibc_expf_exact``). numba's ``np.minimum``/``np.maximum`` return NaN
# when either operand is NaN, as NumPy's do. ``error_model="numpy"``: x / 0 gives inf/NaN, not an exception.

def _llvm_fma(bits):
    float_type = ir.FloatType() if bits == 32 else ir.DoubleType()
    numba_type = types.float32 if bits == 32 else types.float64

    @intrinsic
    def fma(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(float_type, [float_type] * 3),
                                                      f"llvm.fma.f{bits}")
            return builder.call(function, args)
        return numba_type(numba_type, numba_type, numba_type), codegen
    return fma


_fma_f32 = _llvm_fma(32)  # single-rounding float32 a*b + c
_fma_f64 = _llvm_fma(64)  # single-rounding float64 a*b + c


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f64_to_bits(typingctx, x):
    """The uint64 bit pattern of the float64 ``x``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose bit pattern is the uint64 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


# error_model="numpy": x / 0 gives inf or NaN as in NumPy; nogil: `ssd-np detect --jobs N` threads run at once
_njit = numba.njit(cache=True, error_model="numpy", nogil=True)


@_njit
def _pow2_1(e):
    """``_pow2``: the float32 with exponent field ``e + 127`` (int)."""
    return _f32_from_bits(np.int32((e + 127) << 23))


@_njit
def _clip_to_int(m, low, high):
    """``np.nan_to_num(np.clip(m, low, high)).astype(np.int32)`` of one float32."""
    return np.int32(0) if m != m else np.int32(np.minimum(np.maximum(m, F32(low)), F32(high)))


@_njit
def _madd1(a, b, c):
    """``_madd``: ``a*b`` rounded, then ``+ c`` rounded (never contracted to an FMA)."""
    return a * b + c


@_njit
def _eigen_exp1(x):
    x_clamped = np.minimum(x, F32(88.723))
    m = np.floor(_madd1(x_clamped, F32(1.44269504088896341), F32(0.5)))
    r = _madd1(m, F32(-0.693359375), x_clamped)
    r = _madd1(m, F32(2.12194440e-4), r)
    r2 = r * r
    p_even = _madd1(r2, F32(1.37449637986719608306884765625e-3), F32(4.166965186595916748046875e-2))
    p_odd = _madd1(r2, F32(8.36894474923610687255859375e-3), F32(0.16666518151760101318359375))
    p_even = _madd1(r2, p_even, F32(0.49999988079071044921875))
    p_low = r + F32(1.0)
    y = _madd1(r, p_odd, p_even)
    y = _madd1(r2, y, p_low)
    e = min(max(_clip_to_int(m, -300, 300), -278), 278)
    b = e >> 2
    c = _pow2_1(b)
    out = np.maximum(((y * c) * c) * c * _pow2_1(e - 3 * b), x)  # _eigen_ldexp(y, m)
    return F32(0.0) if x < F32(-104.0) else out


@_njit
def _eigen_logistic1(x):
    half_x = np.minimum(x, F32(16.6355324)) * F32(0.5)
    m = np.floor(_madd1(half_x, F32(1.44269504088896341), F32(0.5)))
    r = _madd1(m, F32(-0.693359375), half_x)
    r = _madd1(m, F32(2.12194440e-4), r)
    r2 = r * r
    p_even = _madd1(r2, F32(4.1898667812347412109375e-2), F32(0.49999141693115234375))
    p_odd = _madd1(r2, F32(8.33471305668354034423828125e-3), F32(0.16666877269744873046875))
    p_low = r + F32(1.0)
    p = _madd1(r, p_odd, p_even)
    p = _madd1(r2, p, p_low)
    e = p * _pow2_1(_clip_to_int(m, -126, 127))
    e = e * e
    return F32(0.0) if x < F32(-104.0) else e / (F32(1.0) + e)


@_njit
def _glibc_expf1(x):
    """``_glibc_expf_exact`` with hardware FMAs (the glibc build's own arithmetic), range checks of ``glibc_expf``."""
    if x != x:
        return x
    if x > _OVERFLOW_X:
        return F32(np.inf)
    if x < _UNDERFLOW_X:
        return F32(0.0)
    xd = np.float64(x)
    kd = _fma_f64(_INV_LN2_N, xd, _SHIFT)
    ki = _f64_to_bits(kd)
    kd -= _SHIFT
    r = _fma_f64(_INV_LN2_N, xd, -kd)
    s = _f64_from_bits(_EXP_TABLE[ki % np.uint64(32)] + (ki << np.uint64(47)))  # uint64, wrapping
    z = _fma_f64(_C0, r, _C1)
    y = _fma_f64(_C2, r, 1.0)
    y = _fma_f64(z, r * r, y)
    return F32(y * s)


@_njit
def _eigen_scalar_logistic1(x):
    e = _glibc_expf1(np.minimum(x, F32(16.6355324)))
    return e / (F32(1.0) + e)


_FLT_MIN = np.finfo(F32).tiny


@_njit
def _flush1(v):
    """``flush_subnormals`` of one float32 (a subnormal becomes a zero of its sign)."""
    return F32(0.0) * v if abs(v) < _FLT_MIN else v


@_njit
def _tf_exp_kernel(x):  # (n,) -> (n,)
    out = np.empty_like(x)
    n_packet = len(x) - len(x) % TF_PACKET_SIZE
    for i in range(n_packet):
        out[i] = _flush1(_eigen_exp1(x[i]))
    for i in range(n_packet, len(x)):
        out[i] = _flush1(_glibc_expf1(x[i]))
    return out


@_njit
def _tf_sigmoid_kernel(x):  # (n,) -> (n,)
    out = np.empty_like(x)
    n_packet = len(x) - len(x) % TF_PACKET_SIZE
    for i in range(n_packet):
        out[i] = _flush1(_eigen_logistic1(x[i]))
    for i in range(n_packet, len(x)):
        out[i] = _flush1(_eigen_scalar_logistic1(x[i]))
    return out


@_njit
def _glibc_expf_kernel(x):  # (n,) -> (n,)
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = _glibc_expf1(x[i])
    return out


_EXP_P5, _EXP_P4, _EXP_P3, _EXP_P2, _EXP_P1 = _EXP_POLY


@_njit
def _onednn_logistic1(x):
    v = -abs(x)
    underflow = v < _LN_FLT_MIN
    v = np.maximum(np.minimum(v, _LN_FLT_MAX), _LN_FLT_MIN)
    n = np.floor(v * _LOG2E + F32(0.5))
    r = _fma_f32(-n, _LN2, v)
    scale = F32(0.0) if underflow else _pow2_1(np.int32(0) if n != n else np.int32(n - F32(1.0)))
    p = _fma_f32(_EXP_P5, r, _EXP_P4)
    p = _fma_f32(p, r, _EXP_P3)
    p = _fma_f32(p, r, _EXP_P2)
    p = _fma_f32(p, r, _EXP_P1)
    p = _fma_f32(p, r, F32(1.0))
    e = p * scale * F32(2.0)
    y = e / (e + F32(1.0))
    return F32(1.0) - y if x > F32(0.0) else y


@_njit
def _onednn_logistic_kernel(x):  # (n,) -> (n,)
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = _onednn_logistic1(x[i])
    return out


def _elementwise_fast(kernel, x):
    x = np.asarray(x, F32)
    return kernel(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)


def tf_exp_fast(x):
    """``tf_exp``, compiled."""
    return _elementwise_fast(_tf_exp_kernel, x)


def tf_sigmoid_fast(x):
    """``tf_sigmoid``, compiled."""
    return _elementwise_fast(_tf_sigmoid_kernel, x)


def glibc_expf_fast(x):
    """``glibc_expf``, compiled."""
    return _elementwise_fast(_glibc_expf_kernel, x)


def onednn_logistic_fast(x):
    """``onednn_logistic``, compiled."""
    return _elementwise_fast(_onednn_logistic_kernel, x)
