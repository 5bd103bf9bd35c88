"""Atomic operations on integer array elements, for Numba kernels.

Two threads that share one epoch (see :mod:`fastgd._kernels.linear.minibatch_two_threads`)
coordinate through a small ``int64`` array: one thread claims work by a
compare-and-swap, announces finished work with an atomic add, and publishes
new parameters with a release store that the other thread reads with an
acquire load. Numba has no atomics, so this module exposes LLVM's as
intrinsics, in the same way :mod:`fastgd._kernels.runtime.prefetch` exposes the
prefetch instruction.

Memory order: a release store (or read-modify-write) makes every write the
thread did before it visible to a thread whose acquire load reads the stored
value. That is what lets one thread read the partial gradients and the
parameters the other wrote, with plain loads, after the handshake.
"""

import os
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.tuning import SPINS_BEFORE_YIELD

INT64_BYTES = 8


def _is_int64_array(array_type):
    return isinstance(array_type, types.Array) and array_type.dtype == types.int64


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _pointer_and_operands(context, builder, sig, args):
    """For ``args = (array, index, *operands)``: the pointer to ``array[index]``
    followed by the operands cast to int64."""
    array, index, *operands = args
    pointer = _element_pointer(context, builder, sig.args[0], array, index)
    cast = [
        context.cast(builder, value, value_type, types.int64)
        for value, value_type in zip(operands, sig.args[2:], strict=True)
    ]
    return (pointer, *cast)


@intrinsic
def load_acquire(typingctx, array_type, index_type):
    """``array[index]``, read atomically with acquire order (int64 arrays)."""
    if not _is_int64_array(array_type) or not isinstance(index_type, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], *args)
        return builder.load_atomic(pointer, "acquire", INT64_BYTES)

    return types.int64(array_type, index_type), codegen


@intrinsic
def store_release(typingctx, array_type, index_type, value_type):
    """``array[index] = value``, written atomically with release order."""
    if not _is_int64_array(array_type) or not isinstance(value_type, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pointer, value = _pointer_and_operands(context, builder, sig, args)
        builder.store_atomic(value, pointer, "release", INT64_BYTES)
        return context.get_dummy_value()

    return types.void(array_type, index_type, value_type), codegen


@intrinsic
def compare_exchange(typingctx, array_type, index_type, expected_type, new_type):
    """If ``array[index] == expected``, set it to ``new`` atomically; return whether it did."""
    if not _is_int64_array(array_type):
        return None
    if not all(isinstance(t, types.Integer) for t in (index_type, expected_type, new_type)):
        return None

    def codegen(context, builder, sig, args):
        pointer, expected, new = _pointer_and_operands(context, builder, sig, args)
        outcome = builder.cmpxchg(pointer, expected, new, "acq_rel", "acquire")
        return builder.extract_value(outcome, 1)

    return types.boolean(array_type, index_type, expected_type, new_type), codegen


@intrinsic
def fetch_add(typingctx, array_type, index_type, value_type):
    """``array[index] += value`` atomically (acquire-release); return the old value."""
    if not _is_int64_array(array_type) or not isinstance(value_type, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pointer, value = _pointer_and_operands(context, builder, sig, args)
        return builder.atomic_rmw("add", pointer, value, "acq_rel")

    return types.int64(array_type, index_type, value_type), codegen


@intrinsic
def yield_processor(typingctx):
    """Offer the CPU to another runnable thread (POSIX ``sched_yield``; no-op elsewhere).

    A thread that waits for its partner must not hold the core the partner
    needs when the machine is busy.
    """

    def codegen(context, builder, sig, args):
        if os.name == "posix":
            sched_yield = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield"
            )
            builder.call(sched_yield, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def spin_pause(typingctx):
    """Tell the CPU this is a spin-wait loop (x86 ``pause``; no-op elsewhere).

    It stops the waiting core from flooding the shared flag's cache line with
    reads, and frees resources for a sibling hyper-thread.
    """

    def codegen(context, builder, sig, args):
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            pause = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(pause, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def cycle_counter(typingctx):
    """A fast, monotonic tick count (x86's time-stamp counter: about 1e9-4e9 per second).

    For timeouts of a fraction of a millisecond in wait loops, where a
    system call per check would cost more than the wait.
    """

    def codegen(context, builder, sig, args):
        read = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(read, [])

    return types.int64(), codegen


@numba.njit(inline="always", **KERNEL_OPTIONS)
def wait_step(n_waits):
    """One round of a wait loop: pause, and yield the CPU every few hundred rounds.

    Returns the updated number of rounds waited.
    """
    spin_pause()
    n_waits += 1
    if n_waits % SPINS_BEFORE_YIELD == 0:
        yield_processor()
    return n_waits


@numba.njit(**KERNEL_OPTIONS)
def wait_until_at_least(flags, index, target):
    """Block until ``flags[index] >= target`` (read with acquire order)."""
    n_waits = 0
    while load_acquire(flags, index) < target:
        n_waits = wait_step(n_waits)
