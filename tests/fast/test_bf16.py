"""bfloat16 products (bptt.fast.bf16): the conversion against PyTorch's, the kernel against the NumPy
oracle bit for bit (on this CPU's path: AVX512-BF16's vdpbf16ps, or the emulation; each test's id names
it), the emulation against the instruction where the CPU has it, and the engine's bf16 gradients
against float64 within the documented tolerance (docs/fast-engine.md, "bf16")."""

import numpy as np
import pytest
from numba import njit

from bptt.fast import bf16, matmul, packed
from bptt.model import engine
from bptt.model.network import Network

PATH = bf16.path() or "none"
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-39, -1e-39, 1e-30, 3e38, -3e38, 1.0, 1.00390625,
                    1.01171875, 65504.0], np.float32)


def bits(x):
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def test_rounding_equals_torch_bfloat16():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([SPECIAL, (rng.standard_normal(20000) * np.exp(rng.uniform(-80, 80, 20000))).astype(np.float32),
                        (np.arange(1, 2000, dtype=np.float32) * np.float32(2 ** -8) + 1)])      # ties at every step
    ours = bf16.widen(bf16.round_bf16(x))
    theirs = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    normal = np.abs(theirs) >= bf16.TINY              # widen reads a subnormal bf16 as zero, as the instruction does
    assert np.array_equal(ours[normal], theirs[normal], equal_nan=True)
    assert np.all(ours[~normal & ~np.isnan(theirs)] == 0)
    pairs = bf16.pairs(x[None, :-1 if x.size % 2 else None])[0]       # the compiled rounding, the same bits
    assert np.array_equal(pairs & 0xFFFF, bf16.round_bf16(x[0:pairs.size * 2:2]))
    assert np.array_equal(pairs >> 16, bf16.round_bf16(x[1:pairs.size * 2:2]))
    wide = x[:2001 * 11].reshape(2001, 11)                            # on every core: the same bits, an odd K
    assert wide.nbytes < packed.PARALLEL_BYTES and np.array_equal(bf16.pairs_on_cores(wide), bf16.pairs(wide))
    tall = np.tile(wide, (8, 1))
    assert tall.nbytes >= packed.PARALLEL_BYTES and np.array_equal(bf16.pairs_on_cores(tall), bf16.pairs(tall))


def test_reference_is_the_bf16_product_to_float32_round_off():
    """The oracle itself: within K float32 roundings of the exact product of the rounded operands."""
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((9, 301)).astype(np.float32), rng.standard_normal((301, 7)).astype(np.float32)
    a, b = (bf16.widen(bf16.round_bf16(m)).astype(np.float64) for m in (A, B))
    exact = a @ b
    assert np.all(np.abs(bf16.reference(A, B) - exact) <= 302 * 2 ** -24 * (np.abs(a) @ np.abs(b)))
    assert np.abs(bf16.reference(A, B) - A.astype(np.float64) @ B).max() > 1e-3      # it does round to bf16


@pytest.mark.parametrize("path", [PATH])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (6, 2, 64), (7, 5, 3), (13, 33, 130), (16, 256, 1024), (5, 64, 65),
                                   (6, 600, 130), (3, 1031, 64), (8, 257, 64),
                                   (12, 3, 200)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_equals_reference(path, M, K, N, beta):
    rng = np.random.default_rng(M * 1000 + K)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C0 = np.where(rng.random((M, N)) < 0.1, np.nan, rng.standard_normal((M, N))).astype(np.float32)
    C = C0.copy()
    bf16.gemm(bf16.pairs(A), bf16.pack(B, False), C, beta)
    expected = bf16.reference(A, B, C0, beta)
    assert np.array_equal(bits(C), bits(expected)) or np.array_equal(C, expected, equal_nan=True)
    C2 = C0.copy()
    bf16.gemm(bf16.pairs(np.asfortranarray(A)), bf16.pack(np.ascontiguousarray(B.T), True), C2, beta)   # strided rows
    assert np.array_equal(C2, C, equal_nan=True)


@pytest.mark.parametrize("path", [PATH])
@pytest.mark.parametrize("M,K,N", [(1024, 96, 256), (65, 128, 256), (200, 7, 24), (2048, 131, 64)])
def test_matmul_forms_equal_reference(path, M, K, N):
    """A B, and X^T Y both ways (X's columns transposed, or C^T = Y^T X): the same sums, the same bits.
    A (2048, 131) takes more than packed.PARALLEL_BYTES: its pairs are made on every core."""
    rng = np.random.default_rng(K)
    X, Y = rng.standard_normal((K, M)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    expected = bf16.reference(X.T, Y)
    for threads in (1, 2):
        assert np.array_equal(matmul.matmul(X.T, Y, threads, precision="bf16"), expected)
        assert np.array_equal(matmul.matmul(np.ascontiguousarray(X.T), Y, threads, precision="bf16"), expected)
    assert np.array_equal(matmul.matmul(X.T, Y, threads=None, precision="bf16").T,
                          matmul.matmul(Y.T, X, precision="bf16"))
    with pytest.raises(ValueError, match="precision: 'bf16' multiplies float32 arrays, got float64"):
        matmul.matmul(X.T.astype(np.float64), Y, precision="bf16")


@pytest.mark.parametrize("path", [PATH])
@pytest.mark.parametrize("K0, K", [(32, 2048), (7, 131), (6, 7), (0, 64), (5, 5)])
def test_stacked_rows_equal_one_array(path, K0, K):
    """X^T Y with X's rows given as two arrays (dU's h_0, then h_1 .. h_{T-1} in place: matmul.bf16_tn_packed's
    first), a pair of rows straddling the two when K0 is odd: the bits of the one array's product."""
    rng = np.random.default_rng(K0 + K)
    X, Y = rng.standard_normal((K, 40)).astype(np.float32), rng.standard_normal((K, 70)).astype(np.float32)
    first, rest = X[:K0].copy(), X[K0:].copy()          # apart in memory: reading past first is not reading rest
    assert np.array_equal(bf16.pairs_of_stacked_columns(first, rest, 3, 37), bf16.pairs_of_columns(X, 3, 37))
    assert np.array_equal(bf16.pairs_of_columns(X, 3, 37), bf16.pairs(np.ascontiguousarray(X[:, 3:37].T)))
    for threads in (1, 2):
        C = matmul.bf16_tn_packed(bf16.pack(Y, False), rest, np.empty((70, 40), np.float32), threads, first=first)
        assert np.array_equal(C, bf16.reference(Y.T, X))


@pytest.mark.parametrize("K, N", [(1031, 200), (1030, 129), (5, 70)])
def test_pack_is_the_documented_layout(K, N):
    """pack(B, False) and pack(B^T, True): pair row i of panel p holds (B[2i, j], B[2i + 1, j]) for column
    j = p NC + jj, zeros beyond N and K; on every core (panels shared out) for a B of PARALLEL_BYTES or
    more, on one below. The layout built with NumPy from round_bf16."""
    B = np.random.default_rng(K + N).standard_normal((K, N)).astype(np.float32)
    assert (B.nbytes >= packed.PARALLEL_BYTES) == (K > 1000)
    NC = bf16.pack_panels(B[:2, :1], False).shape[2]        # the panels' width
    K2, P = (K + 1) // 2, -(-N // NC)
    full = np.zeros((2 * K2, P * NC), np.uint32)
    full[:K, :N] = bf16.round_bf16(B)
    expected = (full[0::2] | (full[1::2] << 16)).reshape(K2, P, NC).transpose(1, 0, 2)
    assert np.array_equal(bf16.pack(B, False), expected)
    assert np.array_equal(bf16.pack(np.ascontiguousarray(B.T), True), expected)
    assert np.array_equal(bf16.pack_panels(B, False), expected)


def test_pairs_of_columns_on_every_core_are_the_same_bits():
    """V^T's pairs for the readout by classes, made on every core for a large V (odd K, a column count
    whose pair rows split unevenly): the bits of one thread's, and of pairs(X^T)."""
    rng = np.random.default_rng(5)
    for K, M in ((10001, 200), (33, 7)):
        X = rng.standard_normal((K, M)).astype(np.float32)
        assert (X.nbytes >= packed.PARALLEL_BYTES) == (K > 1000)
        assert np.array_equal(bf16.pairs_of_columns_on_cores(X), bf16.pairs_of_columns(X, 0, M))
        assert np.array_equal(bf16.pairs_of_columns_on_cores(X), bf16.pairs(np.ascontiguousarray(X.T)))


@njit
def _both_tiles(A2, Bk, C1, C2, rows):
    bf16._tile_emulated(A2, Bk, C1, np.float32(0.0), rows, 4, 0)
    bf16._tile_hardware(A2, Bk, C2, np.float32(0.0), rows, 4, 0)


@pytest.mark.skipif(not bf16.HARDWARE, reason="this CPU has no AVX512-BF16: the emulation is all it runs")
def test_emulation_equals_the_instruction():
    """vdpbf16ps on this CPU against the emulation, on scales across float32's range and on inf, NaN,
    subnormals and overflowing products (3e38 x 3e38 carried into the sum, not infinity first)."""
    rng = np.random.default_rng(2)
    for trial in range(200):
        K = int(rng.integers(1, 40))
        A = (rng.standard_normal((6, K)) * np.exp(rng.uniform(-40, 40, (6, K)))).astype(np.float32)
        B = (rng.standard_normal((K, 64)) * np.exp(rng.uniform(-40, 40, (K, 64)))).astype(np.float32)
        if trial % 2:
            A.flat[rng.integers(0, A.size, 3)] = rng.choice(SPECIAL, 3)
            B.flat[rng.integers(0, B.size, 6)] = rng.choice(SPECIAL, 6)
        C1, C2 = np.zeros((6, 64), np.float32), np.ones((6, 64), np.float32)
        with np.errstate(all="ignore"):
            _both_tiles(bf16.pairs(A), bf16.pack(B, False)[0], C1, C2, 6)
            expected = bf16.reference(A, B)[:, :64]
        assert np.array_equal(bits(C1), bits(C2)) or np.array_equal(C1, C2, equal_nan=True), trial
        assert np.array_equal(C1, expected, equal_nan=True), trial


@pytest.mark.parametrize("path", [PATH])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("inputs", ["ids", "embedding", "floats"])
def test_gradients_near_float64(path, cell, inputs):
    """The documented tolerance: each gradient within 2e-2 of float64's (norm-relative), the loss within
    1e-3; and not float32's own result (bf16 rounding did happen)."""
    rng = np.random.default_rng(3)
    D, T, B = 7, 6, 5
    shape = dict(cell=cell, input_size=D, hidden_size=24, output_size=D, num_layers=2,
                 embedding_dim=6 if inputs == "embedding" else None)
    x = rng.standard_normal((T, B, D)) if inputs == "floats" else rng.integers(0, D, (T, B))
    y = rng.integers(0, D, (T, B))
    exact = Network(**shape, dtype=np.float64, seed=1, engine="numpy")
    low = Network(**shape, dtype=np.float32, seed=1, precision="bf16")
    plain = Network(**shape, dtype=np.float32, seed=1)
    low.params = plain.params = {k: v.astype(np.float32) for k, v in exact.params.items()}
    r64 = engine.loss_and_grads(exact.params, exact.arch, x, y)
    r16 = engine.loss_and_grads(low.params, low.arch, x.astype(np.float32) if inputs == "floats" else x, y)
    r32 = engine.loss_and_grads(plain.params, plain.arch, x.astype(np.float32) if inputs == "floats" else x, y)
    assert abs(r16.loss - r64.loss) <= 1e-3 * abs(r64.loss)
    for name, g in r64.grads.items():
        err = np.linalg.norm(r16.grads[name] - g) / max(np.linalg.norm(g), 1e-30)
        assert err <= 2e-2, (name, err)
    moved = max(np.linalg.norm(r16.grads[k] - r32.grads[k]) / np.linalg.norm(r32.grads[k]) for k in r32.grads
                if k.endswith(".U"))
    assert moved > 1e-4


def test_refusals(monkeypatch):
    with pytest.raises(ValueError, match="precision: 'bf16' keeps float32 master weights; give dtype=np.float32"):
        Network("lstm", 5, 8, 5, dtype=np.float64, precision="bf16")
    with pytest.raises(ValueError, match="precision: 'bf16' runs on the fast engine"):
        Network("lstm", 5, 8, 5, dtype=np.float32, precision="bf16", engine="numpy")
    with pytest.raises(ValueError, match="the adaptive softmax"):
        Network("lstm", 5, 8, 30, dtype=np.float32, precision="bf16", cutoffs=(10,))
    with pytest.raises(ValueError, match="precision: expected one of"):
        Network("lstm", 5, 8, 5, dtype=np.float32, precision="fp16")
    monkeypatch.setattr(bf16, "path", lambda: None)       # a CPU without AVX512-BF16 (HARDWARE, read when
                                                          # kernels compile, is left alone)
    with pytest.raises(ValueError, match="precision: 'bf16' needs a CPU with AVX512-BF16"):
        Network("lstm", 5, 8, 5, dtype=np.float32, precision="bf16")


def test_path_is_the_instruction_or_the_emulation_only_when_asked(monkeypatch):
    monkeypatch.setattr(bf16, "HARDWARE", True)           # pure Python here: nothing compiles while patched
    assert bf16.path() == "avx512-bf16"
    monkeypatch.setattr(bf16, "HARDWARE", False)
    monkeypatch.delenv(bf16.EMULATE, raising=False)
    assert bf16.path() is None
    monkeypatch.setenv(bf16.EMULATE, "1")
    assert bf16.path() == "emulated"


def test_saved_network_is_float32_and_loads_in_either_precision(tmp_path):
    net = Network("gru", 5, 8, 5, dtype=np.float32, precision="bf16", seed=2)
    net.save(tmp_path / "n.safetensors")
    back = Network.load(tmp_path / "n.safetensors")
    assert back.arch.precision == "float32" and back.dtype == np.float32
    assert all(np.array_equal(back.params[k], v) for k, v in net.params.items())
    assert Network.load(tmp_path / "n.safetensors", precision="bf16").arch.precision == "bf16"


@pytest.mark.parametrize("path", [PATH])
@pytest.mark.parametrize("classes", [False, True])
def test_fused_readout_near_float64(path, classes):
    """The fused cross-entropy in bf16, by rows and by classes (chunks of KC, two ranges, an odd K): loss
    within 1e-4 and dV, dc, dh within 1e-2 of float64 (norm-relative), and not float32's own result."""
    from bptt.fast import readout

    rng = np.random.default_rng(4)
    N, H, K = 37, 24, 401
    h, V = rng.standard_normal((N, H)) * 0.5, rng.standard_normal((K, H)) * 0.3
    c, y, w = rng.standard_normal(K) * 0.1, rng.integers(0, K, N), rng.random(N) / N
    exact = readout.cross_entropy(h, V, c, y, w, classes=classes)
    f32 = [a.astype(np.float32) for a in (h, V, c, w)]
    low = readout.cross_entropy(f32[0], f32[1], f32[2], y, f32[3], threads=2, classes=classes, precision="bf16")
    plain = readout.cross_entropy(f32[0], f32[1], f32[2], y, f32[3], threads=2, classes=classes)
    assert abs(low[0] - exact[0]) <= 1e-4 * abs(exact[0])
    for a, b in zip(exact[1:], low[1:]):
        assert b.dtype == np.float32 and np.linalg.norm(b - a) <= 1e-2 * np.linalg.norm(a)
    assert np.linalg.norm(low[3] - plain[3]) > 1e-5 * np.linalg.norm(plain[3])
