"""Fit the rational tanh of bptt.fast.nonlinear and measure its float32 error.

    python benchmarks/fit_tanh.py

tanh(x) ≈ x P(v) / Q(v), v = (x / X)^2 on [0, X], X = 7.9053111 (beyond it float32 tanh is
within 3e-7 of ±1, and x is clamped). P has degree 6 and Q degree 3 with Q(0) = 1. The fit is
linearised least squares on the relative error, x P - tanh(x) Q weighted by 1 / (tanh(x) Q_prev),
iterated, then Lawson reweighting toward the minimax solution. Prints the coefficients and the
float32 error over every 1e-5 of [-20, 20].
"""

import numpy as np

X = 7.90531110763549805
NP, NQ = 7, 4


def fit(iterations=60):
    x = np.linspace(1e-6, X, 40000)
    v, y = (x / X) ** 2, np.tanh(x)
    q_prev, lawson = np.ones_like(x), np.ones_like(x)
    for it in range(iterations):
        A = np.concatenate([x[:, None] * v[:, None] ** np.arange(NP), -y[:, None] * v[:, None] ** np.arange(1, NQ)],
                           axis=1)
        w = np.sqrt(lawson) / (y * q_prev)
        coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
        p, q = coef[:NP], np.concatenate([[1.0], coef[NP:]])
        q_prev = np.polyval(q[::-1], v)
        err = np.abs(x * np.polyval(p[::-1], v) / q_prev / y - 1)
        if it > 10:
            lawson = lawson * (err / err.max() + 1e-3)
            lawson /= lawson.sum()
    return p, q, err.max()


def rational_float32(x, p, q):
    x = np.clip(x.astype(np.float32), -np.float32(X), np.float32(X))
    v = x * x * np.float32(1 / X**2)
    P, Q = np.float32(0), np.float32(0)
    for c in p[::-1]:
        P = P * v + np.float32(c)
    for c in q[::-1]:
        Q = Q * v + np.float32(c)
    return x * P / Q


def main():
    p, q, rel64 = fit()
    print("P", np.array2string(p, precision=9, separator=", "))
    print("Q", np.array2string(q, precision=10, separator=", "))
    print(f"float64 max relative error of the fit: {rel64:.2e}")
    xs = np.linspace(-20, 20, 4_000_001).astype(np.float32)
    exact = np.tanh(xs.astype(np.float64))
    got = rational_float32(xs, p, q)
    print(f"float32: max absolute error {np.abs(got - exact).max():.2e}, max relative "
          f"{(np.abs(got - exact) / np.maximum(np.abs(exact), 1e-30)).max():.2e} "
          f"(np.tanh in float32: {np.abs(np.tanh(xs) - exact).max():.2e} absolute)")


if __name__ == "__main__":
    main()
