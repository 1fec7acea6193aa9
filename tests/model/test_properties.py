"""Property tests over shapes (hypothesis), T = 1 and B = 1 included: finite differences and
PyTorch agree with BPTT for any small configuration, and the forward pass is consistent."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptt.lab import gradcheck

cases = st.builds(
    gradcheck.Case,
    cell=st.sampled_from(gradcheck.CELL_NAMES),
    num_layers=st.integers(1, 3),
    inputs=st.sampled_from(gradcheck.INPUT_KINDS),
    target=st.sampled_from(["every", "last"]),
    loss=st.sampled_from(["cross_entropy", "mse"]),
    with_state=st.booleans(),
    with_lengths=st.booleans(),
    T=st.integers(1, 6),
    B=st.integers(1, 4),
    V=st.integers(1, 6),
    E=st.integers(1, 4),
    H=st.integers(1, 5),
    K=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases)
def test_bptt_equals_finite_differences(case):
    errors = gradcheck.against_finite_differences(case)
    assert max(errors.values()) < 1e-7, (case, errors)


@SETTINGS
@given(cases)
def test_bptt_equals_pytorch(case):
    errors = gradcheck.against_torch(case)
    assert errors.pop("loss") < 1e-10
    assert max(errors.values()) < 1e-8, (case, errors)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(1, 5), st.integers(1, 4))
def test_t1_and_b1_edges(T, B):
    for cell in gradcheck.CELL_NAMES:
        case = gradcheck.Case(cell, num_layers=2, T=1, B=B, with_state=True)
        assert max(gradcheck.against_finite_differences(case).values()) < 1e-7
        case = gradcheck.Case(cell, num_layers=2, T=T, B=1, with_lengths=True, target="last")
        assert max(gradcheck.against_finite_differences(case).values()) < 1e-7
