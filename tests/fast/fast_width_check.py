"""The fast engine's kernel tests at a vector width chosen here, not by the CPU:

    NUMBA_CACHE_DIR=<empty dir> python tests/fast/fast_width_check.py 32|64

packed.py picks its vector width once, at import, from the CPU (64 bytes where LLVM reports
avx512f, else 32). This script fakes that one feature for packed.py before bptt.fast is imported,
then runs the same test functions as pytest does (tests/fast/test_packed.py, test_fast_readout.py,
test_fast.py), each on the cases of its own parametrize marks (all of them, or the subset chosen in
checks()), and prints `ok <check>` or `FAIL <check>: <error>` per case, then one line on the
machine code of packed.gemm (zmm registers or none); the exit status is the number of failures
(capped at 100). tests/fast/test_fast_widths.py runs it at the width this CPU does not use, in a fresh
numba cache: numba keys its cache by CPU, not by packed's width, so the two widths must never
share one. Blocks of rows run one after the other here (as in a forked process, bptt.fast.rows):
their parallel forms are the same at any width and would cost about 10 s of compilation each.

numba's own code generator is told the CPU's features through NUMBA_CPU_FEATURES: with 32 those of
this CPU without AVX-512 (as an AVX2 machine would build everything), with 64 those of this CPU
as they are (it must not emit AVX-512 where the CPU lacks it; the 512-bit vectors of the kernel's
IR are then split by LLVM, which is what makes the 64-byte build run on any x86-64 CPU).
"""

import itertools
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _label(value):
    return getattr(value, "__name__", None) or str(value)


def cases(fn, keep=None):
    """(label, kwargs) for every case of fn's parametrize marks that keep(**kwargs) accepts."""
    grids = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        ids = mark.kwargs.get("ids")
        grid = []
        for i, value in enumerate(values):
            value = tuple(value) if len(names) > 1 else (value,)
            label = ids[i] if ids else "-".join(_label(v) for v in value)
            grid.append((label, dict(zip(names, value, strict=True))))
        grids.append(grid)
    for combo in itertools.product(*grids):           # pytestmark lists the mark nearest the function first, as ids do
        kwargs = {k: v for _, part in combo for k, v in part.items()}
        if keep is None or keep(**kwargs):
            yield "-".join(label for label, _ in combo), kwargs


def checks():
    """[(name, function, kwargs)]: every check the script runs, in order. Imports the test modules
    (and so bptt.fast): call it after the width is fixed."""
    for folder in (HERE, os.path.join(os.path.dirname(HERE), "model")):     # the streaming tests sit in tests/model
        if folder not in sys.path:
            sys.path.insert(0, folder)
    import test_bf16
    import test_fast
    import test_fast_adaptive
    import test_fast_projection
    import test_fast_readout
    import test_loop_table
    import test_packed
    import test_streaming

    matrix = {id(case) for case in test_fast.MATRIX + test_fast.OPTIONS}

    def one_per_shape(case):
        """Of the gradient-check matrix, the cases with one layer, an initial state and lengths: every
        cell x input kind x target x loss (the GEMM paths; the other flags change no kernel); the same
        of the bidirectional ones, and the learned initial state's many-to-one cases. All the training
        cases (resets, loss masks, dropout, tied embeddings)."""
        one = case.num_layers == 1 and case.with_state and case.with_lengths
        return id(case) not in matrix or one or (case.learn_init and case.target == "last")

    plan = [
        (test_packed, "test_tile_equals_reference", None),
        (test_packed, "test_pack_layout", None),
        (test_packed, "test_transposing_pack_equals_the_plain_one", None),
        (test_packed, "test_gemm", None),
        (test_packed, "test_gemm_tn_rows", None),
        (test_packed, "test_gemm_blocks_of_k", None),
        (test_packed, "test_matmul", None),
        (test_packed, "test_recurrent_grad", None),
        (test_packed, "test_scatter_rows_on_every_core_equals_np_add_at", None),
        (test_fast_readout, "test_equals_unfused", None),
        (test_fast_readout, "test_float32_stays_float32_and_near", None),
        (test_fast_readout, "test_strided_rows_and_int32_targets", None),
        (test_fast_readout, "test_by_classes_equals_unfused", None),
        (test_fast_readout, "test_by_classes_in_float32_and_chosen_for_a_large_vocabulary", None),
        (test_fast_readout, "test_log_likelihood_equals_log_softmax", None),
        (test_fast_readout, "test_log_likelihood_ties_and_float32", None),
        (test_fast, "test_row_blocks_on_threads_equal_reference", None),
        (test_fast, "test_float32_near_float64_reference", None),
        (test_fast, "test_float64_equals_reference", one_per_shape),
        (test_fast, "test_clip_dh_and_trace_equal_reference", None),
        (test_fast_projection, "test_float64_equals_reference", None),
        (test_fast_projection, "test_float32_near_float64_reference", None),
        (test_fast_projection, "test_caches_are_interchangeable", None),
        (test_fast_projection, "test_frozen_weights_and_a_misfit_r", None),
        (test_streaming, "test_short_windows_equal_one_forward_and_none_is_zeros", None),
        (test_streaming, "test_tied_embeddings_and_both_engines_agree", None),
        (test_fast_adaptive, "test_loss_and_grads_equal_the_reference", None),
        (test_fast_adaptive, "test_log_probs_and_log_likelihood_equal_the_reference", None),
        (test_bf16, "test_gemm_equals_reference", None),          # at 32 bytes: the emulated bf16 tile
        (test_bf16, "test_matmul_forms_equal_reference", None),
        (test_bf16, "test_gradients_near_float64", None),
        (test_bf16, "test_fused_readout_near_float64", None),
        (test_bf16, "test_stacked_rows_equal_one_array", None),
        (test_bf16, "test_pairs_of_columns_on_every_core_are_the_same_bits", None),
        (test_loop_table, "test_table_gradient_summed_in_the_loop_equals_reference", None),
        (test_loop_table, "test_bf16_pairs_made_in_the_loop_equal_the_packed_ones", None),   # 16-wide panels
    ]
    out = []
    for module, name, keep in plan:
        fn = getattr(module, name)
        for label, kwargs in cases(fn, keep):          # one case, labelled "", for a test without parameters
            out.append((f"{module.__name__}::{name}" + (f"[{label}]" if label else ""), fn, kwargs))
    return out


def other_width():
    """The vector width (bytes) this CPU's build does not use: the one this script is run at."""
    from bptt.fast import packed

    return 32 if packed.VECTOR_BYTES == 64 else 64


def command(vector_bytes, cache_dir):
    """(argv, env) that run this script at vector_bytes in a fresh process with the numba cache
    cache_dir (of its own: numba keys its cache by CPU, not by packed's width)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_CPU_FEATURES", None)
    env.pop("NUMBA_CPU_NAME", None)
    return [sys.executable, os.path.abspath(__file__), str(vector_bytes)], env


def force_width(vector_bytes):
    """Make packed.py (imported after this) build its kernel for vector_bytes, and numba compile for
    this CPU (without AVX-512 when vector_bytes is 32). Returns the features numba is given."""
    import llvmlite.binding as llvm

    assert "numba" not in sys.modules and "bptt.fast" not in sys.modules, "call force_width before importing numba"
    host = llvm.get_host_cpu_features()
    seen = llvm.get_host_cpu_features()
    seen["avx512f"] = vector_bytes == 64
    numba_sees = llvm.get_host_cpu_features()
    if vector_bytes == 32:                            # an AVX2 CPU: no AVX-512 feature at all
        for name in numba_sees:
            if name.startswith(("avx512", "avx10", "evex512", "amx")):
                numba_sees[name] = False
    os.environ["NUMBA_CPU_FEATURES"] = numba_sees.flatten()
    llvm.get_host_cpu_features = lambda: seen
    return host, numba_sees.flatten()


def main(argv):
    if len(argv) != 1 or argv[0] not in ("32", "64"):
        print("usage: fast_width_check.py 32|64  (the vector width in bytes to build the GEMM kernel for)")
        return 2
    vector_bytes = int(argv[0])
    os.environ.setdefault("BPTT_BF16_EMULATE", "1")   # bf16 on the emulation where this build has no vdpbf16ps
    host, features = force_width(vector_bytes)
    from bptt.fast import packed

    assert packed.VECTOR_BYTES == vector_bytes and packed.NV == {64: 4, 32: 2}[vector_bytes], packed.VECTOR_BYTES
    from numba.core.registry import cpu_target

    compiled_for = cpu_target.target_context.codegen()._tm_features
    assert compiled_for == features, (compiled_for, features)
    from bptt.fast import rows

    rows._process["forked"] = True                    # blocks of rows one after the other (module docstring)
    print(f"width {packed.VECTOR_BYTES} bytes, NV {packed.NV}; this CPU avx512f={bool(host.get('avx512f'))}; "
          f"numba compiles for {'+' if '+avx512f' in compiled_for.split(',') else '-'}avx512f", flush=True)
    failures = 0
    for name, fn, kwargs in checks():
        try:
            fn(**kwargs)
        except Exception as error:                    # noqa: BLE001  every failure is reported, then counted
            failures += 1
            print(f"FAIL {name}: {type(error).__name__}: {str(error)[:300]}", flush=True)
        else:
            print(f"ok {name}", flush=True)
    used = set(re.findall(r"\b([xyz]mm)\d", "".join(packed.gemm.inspect_asm().values())))
    avx512 = "+avx512f" in features.split(",")
    name = f"machine code of packed.gemm: {'zmm' if avx512 else 'ymm, no zmm'} registers"
    if not used:                                      # not x86-64: nothing to inspect
        name = "machine code of packed.gemm: not x86-64, not inspected"
    if not used or ("zmm" in used) == avx512 and ("ymm" in used or avx512):   # numba compiles for the CPU it was told
        print(f"ok {name}")
    else:
        failures += 1
        print(f"FAIL {name}: it uses {sorted(used)}")
    print(f"{failures} failed")
    return min(failures, 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
