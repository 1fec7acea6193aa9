"""Initialisers, applied in place to a network's parameters after PyTorch's default.

    default      every cell entry uniform in ±1/sqrt(H)            (PyTorch's nn.RNN/GRU/LSTM)
    xavier       W and U uniform in ±sqrt(6 / (fan_in + H)), per gate block   (Glorot & Bengio 2010)
    orthogonal   each H x H gate block of U orthogonal              (Saxe et al. 2014)
    identity     each gate block of U = scale * I, biases 0, W ~ N(0, 0.001^2)   (IRNN, Le et al. 2015)
    forget_bias  LSTM: the forget gate's total bias b_f + b_Uf set (b_f = value, b_Uf = 0)
                 (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1)
    radius       each gate block of U rescaled to this spectral radius (largest |eigenvalue|), to
                 study vanishing (below 1) and exploding (above 1) gradients

The identity initialisation makes dh_t/dh_{t-1} = diag(f'(a_t)) U start at (nearly) the identity
for a ReLU RNN: gradients neither vanish nor explode at first, the seeds' suggested remedy.
"""

import numpy as np

from .. import checks

WEIGHTS = ("default", "xavier")
RECURRENT = ("default", "xavier", "orthogonal", "identity")


def orthogonal(rng, n, dtype):
    """A uniformly random n x n orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.sign(np.diag(r))).astype(dtype)


def apply(params, arch, rng, weights="default", recurrent="default", forget_bias=None, identity_scale=1.0,
          radius=None):
    """Re-initialise params (a dict from engine.init_params for arch) in place."""
    checks.one_of("weights", weights, WEIGHTS)
    checks.one_of("recurrent", recurrent, RECURRENT)
    if forget_bias is not None and "f" not in arch.spec.GATE_NAMES:
        raise ValueError(f"forget_bias: applies to a cell with a forget gate (cell='lstm') only, got "
                         f"cell={arch.cell!r}")
    if arch.proj_size and (recurrent in ("orthogonal", "identity") or radius is not None):
        raise ValueError(f"{'radius' if radius is not None else 'recurrent'}: needs square gate blocks of U; with "
                         f"proj_size={arch.proj_size} each is {arch.hidden_size} x {arch.proj_size} (use 'default' "
                         f"or 'xavier')")
    H, G = arch.hidden_size, arch.spec.GATES
    for name in (name for k in range(arch.num_layers) for name in arch.layer_names(k)):   # each direction
        W, U, b, b_U = (params[f"{name}.{symbol}"] for symbol in ("W", "U", "b", "b_U"))
        dtype = W.dtype
        if weights == "xavier":
            bound = np.sqrt(6.0 / (W.shape[1] + H))
            W[...] = rng.uniform(-bound, bound, W.shape)
        if recurrent == "xavier":
            bound = np.sqrt(6.0 / (U.shape[1] + H))            # fan in: H, or P with projections
            U[...] = rng.uniform(-bound, bound, U.shape)
        elif recurrent == "orthogonal":
            U[...] = np.concatenate([orthogonal(rng, H, dtype) for _ in range(G)])
        elif recurrent == "identity":
            U[...] = np.concatenate([identity_scale * np.eye(H, dtype=dtype)] * G)
            W[...] = rng.normal(0.0, 0.001, W.shape)
            b[...] = 0
            b_U[...] = 0
        if forget_bias is not None:
            f = arch.spec.GATE_NAMES.index("f") * H            # the forget gate's block of b and b_U
            b[f:f + H] = forget_bias
            b_U[f:f + H] = 0
        if radius is not None:
            for j in range(G):
                block = U[j * H:(j + 1) * H]
                block *= radius / np.abs(np.linalg.eigvals(block.astype(np.float64))).max()
    return params
