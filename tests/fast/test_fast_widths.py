"""The fast engine's kernel tests at the vector width this CPU does not use.

packed.py builds its GEMM microkernel from 512-bit vectors where the CPU has AVX-512 and from
256-bit ones elsewhere, once, at import; the other tests run at this CPU's width. This one runs
tests/fast/fast_width_check.py in a fresh process forced to the other width (64 bytes on an AVX2 CPU,
where LLVM splits the 512-bit vectors; 32 on an AVX-512 CPU, with numba compiling as for AVX2) and
in a numba cache of its own: the tile against its plain-loop reference, gemm, gemm_tn, matmul, dU,
the fused readout and cross-entropy, and every cell's forward and backward against the NumPy
reference, float32 and float64 (the list: fast_width_check.checks). Compiling them costs about a
minute of one core. In a run of the whole suite conftest.py starts that process with the session,
beside the compilation of this width, and this test collects its output.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import fast_width_check


def other_width_run(other, tmp_path):
    """(stdout, stderr, exit status) of fast_width_check.py at width `other`: the run conftest.py
    started in the background at the start of the whole suite (BPTT_OTHER_WIDTH_RUN), waited for, or
    else one started here, in a numba cache of its own."""
    started = os.environ.get("BPTT_OTHER_WIDTH_RUN")
    if started and (Path(started) / "width").read_text() == str(other):
        rc, deadline = Path(started) / "rc", time.monotonic() + 900
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert rc.exists(), f"the check at width {other} started by conftest.py did not end in 900 s"
        return (Path(started) / "stdout").read_text(), (Path(started) / "stderr").read_text(), int(rc.read_text())
    argv, env = fast_width_check.command(other, tmp_path / "numba")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    return done.stdout, done.stderr, done.returncode


def bf16_path_free(name):
    """A check's name without the bf16 path in its id (test_bf16's ids name the path that ran: this CPU's
    here, the emulation in the 256-bit build)."""
    return re.sub(r"(^|-|\[)(avx512-bf16|emulated|none)\]", r"\1PATH]", name)


def test_kernels_at_the_other_width(tmp_path):
    other = fast_width_check.other_width()
    stdout, stderr, returncode = other_width_run(other, tmp_path)
    lines = stdout.splitlines()
    report = "\n".join(line for line in lines if not line.startswith("ok ")) + "\n" + stderr[-3000:]
    assert lines and lines[0].startswith(f"width {other} bytes, NV {4 if other == 64 else 2};"), report
    if other == 32:
        assert lines[0].endswith("numba compiles for -avx512f"), report
    ran = {bf16_path_free(line) for line in lines}
    missing = [name for name, _, _ in fast_width_check.checks() if bf16_path_free(f"ok {name}") not in ran]
    assert not missing and returncode == 0, f"{len(missing)} checks failed or did not run: {missing[:20]}\n{report}"
    assert any(line.startswith("ok machine code of packed.gemm") for line in lines), report
    assert lines[-1] == "0 failed", report
