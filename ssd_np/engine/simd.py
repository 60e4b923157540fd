"""The engine's building blocks: the ISA numba compiles for, 16-lane float32 vectors for numba, aligned buffers.

Vectors. The hot loops are written with explicit 16-lane float32 vectors (`F32x16`, an LLVM `<16 x float>`: one
AVX-512 zmm register, two AVX2 ymm, four SSE xmm or NEON q registers): `vload`, `vstore`, `vsplat`, `vbroadcast`,
`vfma`, `vmul`, `vadd`, `vrelu6`. LLVM does not keep a GEMM's accumulator tile in registers when the tile is an array (it spills it to
memory or vectorizes the wrong loop); with vector-typed locals the accumulators are SSA values, i.e. registers.
No fast-math anywhere: `vmul` then `vadd` rounds twice, `vfma` (`llvm.fma`) rounds once, as the kernels they
mirror do. Outputs and packed weights start on a cache line (`empty_aligned`).

The machine the kernels are compiled for (`TARGET`). numba compiles for the CPU it runs on, or for
`NUMBA_CPU_NAME` with the features `NUMBA_CPU_FEATURES` (when only the name is given, numba keeps the host's
features: `NUMBA_CPU_NAME=haswell` alone still emits AVX-512 on an AVX-512 machine; `NUMBA_CPU_NAME=haswell
NUMBA_CPU_FEATURES=` (empty) gives Haswell's own AVX2 + FMA). At import, `compile_target()` asks LLVM, with the
same CPU name and features, to compile one `<16 x float>` FMA and reads the assembly: how wide the vector
registers are that hold an F32x16 (512, 256 or 128 bits), whether the FMA is one instruction, and hence how many
vector registers there are (32 with AVX-512 and on AArch64, 16 for AVX2 / SSE). The register tiles of conv.py
are sized from it, so that the accumulators and operands of the inner loop fit the register file.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, models, register_model

from ssd_np.jit import njit


ALIGN = 64  # bytes: a cache line; a vector load or store that straddles two lines costs two


def check_hwc(x: np.ndarray, name: str) -> None:
    if x.ndim != 3 or x.dtype != np.float32:
        raise ValueError(f"{name}: expected a float32 (H, W, C) array, got {x.dtype} {x.shape}")


@njit
def aligned_scratch(n):
    """np.empty(n, float32) whose data starts on a cache line (numpy only guarantees 16 bytes); callable inside
    kernels."""
    buffer = np.empty(n + ALIGN // 4, np.float32)
    start = (-buffer.ctypes.data % ALIGN) // 4
    return buffer[start:start + n]


def empty_aligned(shape: tuple[int, ...] | int) -> np.ndarray:
    """`aligned_scratch` of any shape, from Python."""
    return aligned_scratch(math.prod(shape) if isinstance(shape, tuple) else shape).reshape(shape)


# ---------------------------------------------------------------------------------------------------------------
# 16-lane float32 vectors for numba: a type and a few intrinsics (each one LLVM instruction or two).
# ---------------------------------------------------------------------------------------------------------------

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Target(NamedTuple):
    """What numba's machine code runs on: `isa` is "avx512", "avx2" (256-bit vectors with FMA), or a portable
    description such as "128-bit vectors, FMA" (SSE, NEON) or "..., no FMA" (FMA then costs a library call)."""
    cpu: str  # LLVM's CPU name (numba's host CPU or NUMBA_CPU_NAME)
    vector_bits: int  # width of the registers that hold an F32x16
    registers: int  # vector registers of that width
    fma: bool  # llvm.fma is one instruction
    isa: str


_PROBE = f"""
define void @probe({_VECTOR}* %p) {{
  %a = load {_VECTOR}, {_VECTOR}* %p
  %b = call {_VECTOR} @llvm.fma.v16f32({_VECTOR} %a, {_VECTOR} %a, {_VECTOR} %a)
  store {_VECTOR} %b, {_VECTOR}* %p
  ret void
}}
declare {_VECTOR} @llvm.fma.v16f32({_VECTOR}, {_VECTOR}, {_VECTOR})
"""


def compile_target() -> Target:
    """The `Target` numba compiles for: LLVM compiles one F32x16 FMA for numba's CPU name and features (see the
    module docstring); the registers it names give the vector width, the instruction whether FMA is native."""
    llvm.initialize_native_target()  # numba does it when it compiles; not done yet with NUMBA_DISABLE_JIT=1
    llvm.initialize_native_asmprinter()
    cpu = numba.config.CPU_NAME or llvm.get_host_cpu_name()
    features = numba.config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=0)
    asm = machine.emit_assembly(llvm.parse_assembly(_PROBE))
    if "zmm" in asm:
        bits = 512
    elif "ymm" in asm:
        bits = 256
    else:
        bits = 128
    fma = re.search(r"\b(vfmadd|vfnmadd|fmla|fmadd|xvmaddasp)", asm) is not None
    aarch64 = llvm.get_process_triple().startswith(("aarch64", "arm64"))
    registers = 32 if bits == 512 or aarch64 or "+avx512f" in features else 16
    if fma and bits == 512:
        isa = "avx512"
    elif fma and bits == 256:
        isa = "avx2"
    else:
        isa = f"{bits}-bit vectors, {'FMA' if fma else 'no FMA'}"
    return Target(cpu, bits, registers, fma, isa)


TARGET = compile_target()
REGISTERS_PER_VECTOR = LANES * 32 // TARGET.vector_bits  # registers that hold one F32x16


class F32x16(types.Type):
    def __init__(self):
        super().__init__(name="F32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _vector_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VECTOR.as_pointer())


@intrinsic
def vload(typingctx, array, index):
    """`array.flat[index:index + 16]` of a C-contiguous float32 array, unaligned, not bounds-checked."""
    def codegen(context, builder, sig, args):
        return builder.load(_vector_pointer(context, builder, sig.args[0], *args), align=4)
    return f32x16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, v):
    """`array.flat[index:index + 16] = v`, unaligned, not bounds-checked."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _vector_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()
    return types.none(array, index, v), codegen


@intrinsic
def vsplat(typingctx, x):
    """The float32 scalar x in all 16 lanes."""
    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[0], sig.args[0], types.float32)
        v = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_VECTOR, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return f32x16(x), codegen


@intrinsic
def vbroadcast(typingctx, array, index):
    """`array.flat[index]` (float32, C-contiguous) in all 16 lanes, not bounds-checked (vbroadcastss)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        scalar = builder.load(builder.gep(data, [args[1]]), align=4)
        v = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_VECTOR, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return f32x16(array, index), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c rounded once (`llvm.fma`: vfmadd)."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3),
                                             "llvm.fma.v16f32")
        return builder.call(fma, args)
    return f32x16(a, b, c), codegen


@intrinsic
def vmul(typingctx, a, b):
    """a * b, rounded (never contracted with a following add: no fast-math flags)."""
    def codegen(context, builder, sig, args):
        return builder.fmul(*args)
    return f32x16(a, b), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b, rounded."""
    def codegen(context, builder, sig, args):
        return builder.fadd(*args)
    return f32x16(a, b), codegen


@intrinsic
def vrelu6(typingctx, v):
    """min(max(v, 0), 6) lane by lane."""
    def codegen(context, builder, sig, args):
        zero, six = ir.Constant(_VECTOR, [0.0] * LANES), ir.Constant(_VECTOR, [6.0] * LANES)
        v = builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])
        return builder.select(builder.fcmp_ordered(">", v, six), six, v)
    return f32x16(v), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """A hint to bring the cache line of `array.flat[index]` into the L2 cache (`prefetcht1`); no effect on any
    result, not bounds-checked (a prefetch never faults)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        address = builder.bitcast(builder.gep(data, [args[1]]), byte)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])  # read, L2, data
        return context.get_dummy_value()
    return types.none(array, index), codegen


@njit
def vload_tail(array, index, n, tmp):
    """Like vload on a 1-D array, for only n < 16 valid elements (the other lanes 0), through the scratch tmp."""
    tmp[:] = 0.0
    for j in range(n):
        tmp[j] = array[index + j]
    return vload(tmp, 0)

