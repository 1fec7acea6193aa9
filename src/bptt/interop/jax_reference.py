"""The network in JAX, an oracle and a peer of the speed benchmark: the same parameters and gate
formulas as bptt's (PyTorch's), differentiated by jax.value_and_grad. JAX is optional: imported
by loss(), not at import of this module."""

def loss(arch):
    """loss(params, x, y): mean cross-entropy over all T B positions of the network arch in JAX, from a
    zero state, params keyed as bptt's (E, l{k}.W, l{k}.U, l{k}.b, l{k}.b_U, V, c). Gates and
    formulas are PyTorch's (see bptt.reference): a = W x_t + b + U h_{t-1} + b_U, and
        rnn   h = tanh(a)
        gru   r, z = σ(a_r), σ(a_z);  n = tanh(W_n x_t + b_n + r (U_n h_{t-1} + b_Un));  h = n + z (h_{t-1} - n)
        lstm  i, f, g, o = σ, σ, tanh, σ of a's blocks;  c = f c_{t-1} + i g;  h = o tanh(c)
    The time loop is a jax.lax.scan; the input projections of all steps are one matmul before it."""
    import jax
    import jax.numpy as jnp

    H, L, cell = arch.hidden_size, arch.num_layers, arch.cell

    def rnn(U_T, b_U):
        def f(h, ax_t):
            h = jnp.tanh(ax_t + h @ U_T + b_U)
            return h, h
        return f

    def gru(U_T, b_U):
        def f(h, ax_t):
            ah = h @ U_T + b_U
            rz = jax.nn.sigmoid(ax_t[:, :2 * H] + ah[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            n = jnp.tanh(ax_t[:, 2 * H:] + r * ah[:, 2 * H:])
            h = n + z * (h - n)
            return h, h
        return f

    def lstm(U_T, b_U):
        def f(hc, ax_t):
            h, c = hc
            a = ax_t + h @ U_T + b_U
            i, f_, o = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H]), jax.nn.sigmoid(a[:, 3 * H:])
            c = f_ * c + i * jnp.tanh(a[:, 2 * H:3 * H])
            h = o * jnp.tanh(c)
            return (h, c), h
        return f

    cells = {"rnn": rnn, "gru": gru, "lstm": lstm}

    def loss(params, x, y):
        xs = params["E"][x] if "E" in params else jax.nn.one_hot(x, arch.input_size, dtype=params["c"].dtype)
        B = x.shape[1]
        for k in range(L):
            W, U, b, b_U = (params[f"l{k}.{n}"] for n in ("W", "U", "b", "b_U"))
            ax = xs @ W.T + b                                              # (T, B, G H)
            h0 = jnp.zeros((B, H), xs.dtype)
            _, xs = jax.lax.scan(cells[cell](U.T, b_U), (h0, h0) if cell == "lstm" else h0, ax)
        z = xs @ params["V"].T + params["c"]                               # (T, B, K)
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

    return loss
