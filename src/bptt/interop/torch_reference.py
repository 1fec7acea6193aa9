"""The same network in PyTorch, differentiated by autograd: the independent reference.

Only imported when torch is installed (it is a test-only dependency). nn.RNN, nn.GRU and nn.LSTM
are used as they are, with pack_padded_sequence for lengths; nn.RNN has no sigmoid, so that one
case and the skip RNN are autograd loops over the same equations. Parameter names are those of bptt.model.torch_names.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def reversal(T, lengths):
    """(T, B) index: row b's first lengths[b] steps in reverse order, its padding in place (None: the
    whole window reversed)."""
    t = torch.arange(T)[:, None]
    return None if lengths is None else torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def flipped(xs, index):
    """xs (T, B, D) with each row's steps reversed by index (reversal)."""
    if index is None:
        return torch.flip(xs, [0])
    return torch.gather(xs, 0, index[:, :, None].expand(xs.shape))


class LoopRNN(nn.Module):
    """h_t = f(W x_t + b + U h_{t-1} + b_U [+ S h_{t-skip}]) as an autograd loop, named as nn.RNN names its
    parameters (plus weight_skip_l{k}): the sigmoid RNN and the skip RNN, which nn.RNN does not have.
    bidirectional: a second loop per layer over each row's steps reversed (its first lengths[b])."""

    def __init__(self, input_size, hidden_size, num_layers, nonlinearity, skip=None, bidirectional=False):
        super().__init__()
        self.num_layers, self.skip = num_layers, skip
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        self.f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[nonlinearity]
        for k in range(num_layers):
            D = input_size if k == 0 else hidden_size * len(self.suffixes)
            for sfx in self.suffixes:
                setattr(self, f"weight_ih_l{k}{sfx}", nn.Parameter(torch.zeros(hidden_size, D)))
                setattr(self, f"weight_hh_l{k}{sfx}", nn.Parameter(torch.zeros(hidden_size, hidden_size)))
                setattr(self, f"bias_ih_l{k}{sfx}", nn.Parameter(torch.zeros(hidden_size)))
                setattr(self, f"bias_hh_l{k}{sfx}", nn.Parameter(torch.zeros(hidden_size)))
                if skip:
                    setattr(self, f"weight_skip_l{k}{sfx}", nn.Parameter(torch.zeros(hidden_size, hidden_size)))

    def direction(self, name, xs, parts, mask):
        """One direction of one layer (parameters named name: l{k} or l{k}_reverse) over xs (T, B, D)
        from the state parts (B, H) each, newest first. Returns (hs (T, B, H), final parts)."""
        W, U = getattr(self, f"weight_ih_{name}"), getattr(self, f"weight_hh_{name}")
        b, b_U = getattr(self, f"bias_ih_{name}"), getattr(self, f"bias_hh_{name}")
        hist = list(reversed(parts))                                 # oldest first; hist[-1] = h_{t-1}
        for t in range(xs.shape[0]):
            h = hist[-1]
            a = xs[t] @ W.T + b + h @ U.T + b_U
            if self.skip:
                a = a + hist[-self.skip] @ getattr(self, f"weight_skip_{name}").T
            h_new = self.f(a)
            hist.append(h_new if mask is None else torch.where(mask[t], h_new, h))
        return torch.stack(hist[len(parts):]), hist[-len(parts):][::-1]   # newest first

    def forward(self, xs, state, lengths=None):
        """state: (L D, B, H), or for the skip RNN a tuple of its s parts (h_0, h_{-1}, ...), each (L D, B, H)."""
        T, D = xs.shape[0], len(self.suffixes)
        mask = None if lengths is None else (torch.arange(T)[:, None] < lengths[None, :])[:, :, None]
        index = reversal(T, lengths)
        parts = state if self.skip else (state,)
        finals = []
        for k in range(self.num_layers):
            outputs = []
            for d, sfx in enumerate(self.suffixes):
                hs, final = self.direction(f"l{k}{sfx}", flipped(xs, index) if d else xs,
                                           [p[k * D + d] for p in parts], mask)
                outputs.append(flipped(hs, index) if d else hs)
                finals.append(final)
            xs = torch.cat(outputs, dim=-1)
        stacked = tuple(torch.stack([f[j] for f in finals]) for j in range(len(parts)))
        return xs, stacked if self.skip else stacked[0]


class Model(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        D = arch.embedding_dim or arch.input_size
        if arch.embedding_dim:
            self.embedding = nn.Embedding(arch.input_size, arch.embedding_dim)
        if arch.cell == "skip" or (arch.cell == "rnn" and arch.nonlinearity == "sigmoid"):
            self.rnn = LoopRNN(D, arch.hidden_size, arch.num_layers, arch.nonlinearity, arch.skip, arch.bidirectional)
        elif arch.cell == "rnn":
            self.rnn = nn.RNN(D, arch.hidden_size, arch.num_layers, nonlinearity=arch.nonlinearity,
                              bidirectional=arch.bidirectional)
        elif arch.cell == "gru":
            self.rnn = nn.GRU(D, arch.hidden_size, arch.num_layers, bidirectional=arch.bidirectional)
        else:
            self.rnn = nn.LSTM(D, arch.hidden_size, arch.num_layers, bidirectional=arch.bidirectional,
                               proj_size=arch.proj_size or 0)
        if arch.cutoffs:
            self.head = nn.AdaptiveLogSoftmaxWithLoss(arch.width, arch.output_size, list(arch.cutoffs),
                                                      div_value=arch.div_value, head_bias=arch.head_bias)
        else:
            self.head = nn.Linear(arch.width, arch.output_size)
        if arch.tie_weights:
            self.head.weight = self.embedding.weight
        rows = arch.num_layers * arch.directions
        for name, size in zip(arch.state_names, arch.state_sizes) if arch.learn_init_state else ():
            setattr(self, f"init_{name}", nn.Parameter(torch.zeros(rows, size)))   # bptt's init.h, init.c

    def initial_state(self, B):
        """The learned initial state, each part (L D, B, size), or None without learn_init_state."""
        if not self.arch.learn_init_state:
            return None
        parts = tuple(getattr(self, f"init_{name}")[:, None].expand(-1, B, -1) for name in self.arch.state_names)
        return parts if len(parts) > 1 else parts[0]

    def forward(self, x, state, lengths=None):
        """x: (T, B) long ids or (T, B, D) floats; returns top-layer states (T, B, D H) and h_n."""
        if self.arch.embedding_dim:
            xs = self.embedding(x)
        elif not x.is_floating_point():
            xs = F.one_hot(x, self.arch.input_size).to(next(self.rnn.parameters()).dtype)
        else:
            xs = x
        if isinstance(self.rnn, LoopRNN):
            return self.rnn(xs, state, lengths)
        if lengths is None:
            return self.rnn(xs, state)
        packed = nn.utils.rnn.pack_padded_sequence(xs, lengths, enforce_sorted=False)
        out, final = self.rnn(packed, state)
        hs, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
        return hs, final


def build(arch, torch_sd, dtype):
    """A Model of arch with the given parameters (a dict of arrays in PyTorch's names)."""
    model = Model(arch).to(TORCH_DTYPES[np.dtype(dtype)])
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in torch_sd.items()}, strict=True)
    return model


def random_state_dict(arch, dtype, seed):
    """PyTorch's own initialisation of arch, as a dict of arrays."""
    torch.manual_seed(seed)
    model = Model(arch).to(TORCH_DTYPES[np.dtype(dtype)])
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def loss_and_grads(model, x, y, state=None, target="every", loss="cross_entropy", lengths=None):
    """Returns (loss, grads by PyTorch name, final state, dx or None, dstate0) as NumPy arrays."""
    arch, dtype = model.arch, next(model.rnn.parameters()).dtype
    model.zero_grad()
    x_t = torch.as_tensor(x).clone()
    if x_t.is_floating_point():
        x_t = x_t.to(dtype).requires_grad_(True)
    else:
        x_t = x_t.long()
    T, B = x_t.shape[:2]
    n_parts = len(arch.state_names)
    learned = state is None and arch.learn_init_state
    parts = (state,) if n_parts == 1 else state
    if state is None:
        parts = tuple(np.zeros((arch.num_layers * arch.directions, B, size)) for size in arch.state_sizes)
    s0 = tuple(torch.as_tensor(np.asarray(p)).to(dtype).clone().requires_grad_(True) for p in parts)
    if learned:
        s0 = model.initial_state(B)
        s0 = s0 if n_parts > 1 else (s0,)
        for s in s0:
            s.retain_grad()                      # dL/d(each row's initial state), as bptt's dstate0
    n = None if lengths is None else torch.as_tensor(np.asarray(lengths)).long()

    hs, final = model(x_t, s0 if n_parts > 1 else s0[0], n)
    if target == "every":
        keep = torch.ones(T, B, dtype=torch.bool) if n is None else torch.arange(T)[:, None] < n[None, :]
        h, y_t = hs[keep], torch.as_tensor(np.asarray(y))[keep]
    elif arch.bidirectional:                     # as a PyTorch user reads it: the top layer's h_n, both directions
        h_n = final[0] if isinstance(final, tuple) else final          # (h_n, c_n), or the skip RNN's newest first
        h, y_t = torch.cat([h_n[-2], h_n[-1]], dim=1), torch.as_tensor(np.asarray(y))
    else:
        last = (torch.full((B,), T - 1) if n is None else n - 1).long()
        h, y_t = hs[last, torch.arange(B)], torch.as_tensor(np.asarray(y))
    if arch.cutoffs:                             # AdaptiveLogSoftmaxWithLoss: its mean loss over the rows
        value = model.head(h, y_t.long()).loss
    elif loss == "cross_entropy":
        value = F.cross_entropy(model.head(h), y_t.long())
    else:
        value = F.mse_loss(model.head(h), y_t.to(dtype))
    value.backward()

    grads = {k: np.zeros(tuple(p.shape)) if p.grad is None else p.grad.detach().numpy().copy()     # None: a
             for k, p in model.named_parameters()}            # cluster of the adaptive softmax with no target
    finals = final if isinstance(final, tuple) else (final,)
    finals = tuple(f.detach().numpy().copy() for f in finals)
    dstate0 = tuple(s.grad.detach().numpy().copy() for s in s0)
    dx = x_t.grad.detach().numpy().copy() if x_t.is_floating_point() else None
    unwrap = (lambda p: p) if n_parts > 1 else (lambda p: p[0])
    return value.item(), grads, unwrap(finals), dx, unwrap(dstate0)
