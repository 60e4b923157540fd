"""TF's and OpenVINO's float32 exp and sigmoid, compiled: twins of `reference.tf_math` (the same bits).

The same float32/float64 operation sequences as the NumPy definitions, one element at a time (`_name1` computes
one element of `tf_math.name`; tests/test_elementwise.py compares them bit for bit), with the reference's own
constants. numba sets no fast-math flags, so LLVM never contracts `a*b + c`: plain arithmetic rounds exactly as
NumPy does, and a true FMA is `llvm.fma`, which rounds once by definition (the NumPy side emulates it in
float64). numba's `np.minimum`/`np.maximum` return NaN when either operand is NaN, as NumPy's do.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ssd_np.jit import njit
from ssd_np.reference.tf_math import (CEPHES_C1, CEPHES_C2, EXP_HI, EXP_POLY, EXPF_C0, EXPF_C1, EXPF_C2,
                                      EXPF_INV_LN2_N, EXPF_OVERFLOW, EXPF_SHIFT, EXPF_TABLE, EXPF_UNDERFLOW, LOG2E,
                                      LOGISTIC_HI, LOGISTIC_POLY, ONEDNN_EXP_POLY, ONEDNN_LN2, ONEDNN_LN_FLT_MAX,
                                      ONEDNN_LN_FLT_MIN, ONEDNN_LOG2E, TF_PACKET_SIZE, UNDERFLOW)

F32 = np.float32
_FLT_MIN = np.finfo(F32).tiny
_EXP_P6, _EXP_P5, _EXP_P4, _EXP_P3, _EXP_P2 = EXP_POLY
_LOG_P4, _LOG_P3, _LOG_P2, _LOG_P1 = LOGISTIC_POLY
_DNN_P5, _DNN_P4, _DNN_P3, _DNN_P2, _DNN_P1 = ONEDNN_EXP_POLY


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
    """The float32 whose bit pattern is the int32 `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f64_to_bits(typingctx, x):
    """The uint64 bit pattern of the float64 `x`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose bit pattern is the uint64 `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


@njit(numpy_division=True)
def _pow2_1(e):
    """`tf_math._pow2`: the float32 with exponent field `e + 127` (int)."""
    return _f32_from_bits(np.int32((e + 127) << 23))


@njit(numpy_division=True)
def _clip_to_int(m, low, high):
    """`np.nan_to_num(np.clip(m, low, high)).astype(np.int32)` of one float32."""
    return np.int32(0) if m != m else np.int32(np.minimum(np.maximum(m, F32(low)), F32(high)))


@njit(numpy_division=True)
def _range_reduce1(x):
    """`tf_math._range_reduce` of one float32 (every product and sum rounded: `_madd`)."""
    m = np.floor(x * LOG2E + F32(0.5))
    return m, m * CEPHES_C2 + (m * CEPHES_C1 + x)


@njit(numpy_division=True)
def _eigen_exp1(x):
    m, r = _range_reduce1(np.minimum(x, EXP_HI))
    r2 = r * r
    p_even = r2 * (r2 * _EXP_P6 + _EXP_P5) + _EXP_P2
    y = r2 * (r * (r2 * _EXP_P4 + _EXP_P3) + p_even) + (r + F32(1.0))
    e = min(max(_clip_to_int(m, -300, 300), -278), 278)  # pldexp(y, m)
    b = e >> 2
    c = _pow2_1(b)
    out = np.maximum(((y * c) * c) * c * _pow2_1(e - 3 * b), x)
    return F32(0.0) if x < UNDERFLOW else out


@njit(numpy_division=True)
def _eigen_logistic1(x):
    m, r = _range_reduce1(np.minimum(x, LOGISTIC_HI) * F32(0.5))
    r2 = r * r
    p = r2 * (r * (r2 * _LOG_P2 + _LOG_P1) + (r2 * _LOG_P4 + _LOG_P3)) + (r + F32(1.0))
    e = p * _pow2_1(_clip_to_int(m, -126, 127))
    e = e * e
    return F32(0.0) if x < UNDERFLOW else e / (F32(1.0) + e)


@njit(numpy_division=True)
def _glibc_expf1(x):
    """`tf_math._glibc_expf_exact` with hardware FMAs (the glibc build's own arithmetic), range checks of
    `glibc_expf`."""
    if x != x:
        return x
    if x > EXPF_OVERFLOW:
        return F32(np.inf)
    if x < EXPF_UNDERFLOW:
        return F32(0.0)
    xd = np.float64(x)
    kd = _fma_f64(EXPF_INV_LN2_N, xd, EXPF_SHIFT)
    ki = _f64_to_bits(kd)
    kd -= EXPF_SHIFT
    r = _fma_f64(EXPF_INV_LN2_N, xd, -kd)
    s = _f64_from_bits(EXPF_TABLE[ki % np.uint64(32)] + (ki << np.uint64(47)))  # uint64, wrapping
    y = _fma_f64(_fma_f64(EXPF_C0, r, EXPF_C1), r * r, _fma_f64(EXPF_C2, r, 1.0))
    return F32(y * s)


@njit(numpy_division=True)
def _eigen_scalar_logistic1(x):
    e = _glibc_expf1(np.minimum(x, LOGISTIC_HI))
    return e / (F32(1.0) + e)


@njit(numpy_division=True)
def _onednn_logistic1(x):
    v = -abs(x)
    underflow = v < ONEDNN_LN_FLT_MIN
    v = np.maximum(np.minimum(v, ONEDNN_LN_FLT_MAX), ONEDNN_LN_FLT_MIN)
    n = np.floor(v * ONEDNN_LOG2E + F32(0.5))
    r = _fma_f32(-n, ONEDNN_LN2, v)
    scale = F32(0.0) if underflow else _pow2_1(np.int32(0) if n != n else np.int32(n - F32(1.0)))
    p = _fma_f32(_fma_f32(_fma_f32(_fma_f32(_fma_f32(_DNN_P5, r, _DNN_P4), r, _DNN_P3), r, _DNN_P2), r, _DNN_P1),
                 r, F32(1.0))
    e = p * scale * F32(2.0)
    y = e / (e + F32(1.0))
    return F32(1.0) - y if x > F32(0.0) else y


@njit(numpy_division=True)
def _flush1(v):
    """`tf_math.flush_subnormals` of one float32 (a subnormal becomes a zero of its sign)."""
    return F32(0.0) * v if abs(v) < _FLT_MIN else v


_TF_EXP, _TF_SIGMOID, _GLIBC_EXPF, _ONEDNN_LOGISTIC = range(4)


@njit(numpy_division=True)
def _elementwise(x, op):  # (n,) -> (n,)
    """`op` of every element; one loop per op and per part (TF's packets, then the last n % 8 elements by its
    scalar code), each simple enough for LLVM to vectorize (a branch inside one loop ran 4.7x slower)."""
    out = np.empty_like(x)
    n_packet = len(x) - len(x) % TF_PACKET_SIZE
    if op == _TF_EXP:
        for i in range(n_packet):
            out[i] = _flush1(_eigen_exp1(x[i]))
        for i in range(n_packet, len(x)):
            out[i] = _flush1(_glibc_expf1(x[i]))
    elif op == _TF_SIGMOID:
        for i in range(n_packet):
            out[i] = _flush1(_eigen_logistic1(x[i]))
        for i in range(n_packet, len(x)):
            out[i] = _flush1(_eigen_scalar_logistic1(x[i]))
    elif op == _GLIBC_EXPF:
        for i in range(len(x)):
            out[i] = _glibc_expf1(x[i])
    else:
        for i in range(len(x)):
            out[i] = _onednn_logistic1(x[i])
    return out


def _apply(op, x):
    x = np.asarray(x, F32)
    return _elementwise(np.ascontiguousarray(x).reshape(-1), op).reshape(x.shape)


def tf_exp(x):
    """`tf_math.tf_exp`, compiled."""
    return _apply(_TF_EXP, x)


def tf_sigmoid(x):
    """`tf_math.tf_sigmoid`, compiled."""
    return _apply(_TF_SIGMOID, x)


def glibc_expf(x):
    """`tf_math.glibc_expf`, compiled."""
    return _apply(_GLIBC_EXPF, x)


def onednn_logistic(x):
    """`tf_math.onednn_logistic`, compiled."""
    return _apply(_ONEDNN_LOGISTIC, x)
