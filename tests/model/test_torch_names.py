"""Keys in the wrong names: net.torch_state_dict(arrays) takes a dict keyed exactly like net.params
(bptt's names) and load_torch_state_dict(sd) one keyed by PyTorch's names; anything else is one
sentence naming the argument, the keys expected, the unexpected and the missing ones, and when the
keys are in the other naming, which name it is (it used to be "not enough values to unpack", or a
KeyError). Shapes, values and the tied head are tests/model/test_errors.py and test_engine_options.py."""

import numpy as np
import pytest

import bptt

OURS = r"\('E', 'l0\.W', 'l0\.U', 'l0\.b', 'l0\.b_U', 'l1\.W', 'l1\.U', 'l1\.b', 'l1\.b_U', 'V', 'c'\)"
THEIRS = (r"\('embedding\.weight', 'rnn\.weight_ih_l0', 'rnn\.weight_hh_l0', 'rnn\.bias_ih_l0', 'rnn\.bias_hh_l0', "
          r"'rnn\.weight_ih_l1', 'rnn\.weight_hh_l1', 'rnn\.bias_ih_l1', 'rnn\.bias_hh_l1', 'head\.weight', "
          r"'head\.bias'\)")


def net():
    return bptt.Network("gru", 7, 3, 5, num_layers=2, embedding_dim=4)


def test_torch_state_dict_names_unexpected_and_missing_keys():
    n = net()
    expected = rf"^arrays: expected a dict keyed like net\.params, bptt's names {OURS}; "
    with pytest.raises(ValueError, match=expected + r"'foo' is unexpected and 'E', .*, 'c' are missing$"):
        n.torch_state_dict({"foo": np.zeros(3)})
    with pytest.raises(ValueError, match=expected + r"'foo' is unexpected$"):
        n.torch_state_dict(n.params | {"foo": np.zeros(3)})
    with pytest.raises(ValueError, match=expected + r"'l1\.b_U', 'c' are missing$"):
        n.torch_state_dict({k: v for k, v in n.params.items() if k not in ("l1.b_U", "c")})
    with pytest.raises(ValueError, match=expected + r"'l0\.X' is unexpected and 'l0\.W' is missing$"):
        n.torch_state_dict({("l0.X" if k == "l0.W" else k): v for k, v in n.params.items()})
    with pytest.raises(TypeError, match=rf"^arrays: expected a dict keyed like net\.params, bptt's names {OURS}, "
                                        r"got list$"):
        n.torch_state_dict(list(n.params.values()))


def test_torch_state_dict_says_when_the_keys_are_pytorchs_already():
    n = net()
    with pytest.raises(ValueError, match=r"are missing \('embedding\.weight' is PyTorch's name for 'E': these are in "
                                         r"PyTorch's names already\)$"):
        n.torch_state_dict(n.torch_state_dict())


def test_torch_state_dict_of_gradients_and_of_a_tied_network():
    n = net()
    _, grads, _ = n.loss_and_grads(np.zeros((3, 2), int), np.zeros((3, 2), int))
    assert list(n.torch_state_dict(grads)) == list(n.torch_state_dict())
    tied = bptt.Network("lstm", 6, 4, 6, embedding_dim=4, tie_weights=True)
    assert tied.torch_state_dict()["head.weight"] is tied.params["E"]
    with pytest.raises(ValueError, match=r"; 'V' is unexpected$"):
        tied.torch_state_dict(tied.params | {"V": np.zeros((6, 4))})


def test_load_torch_state_dict_names_wrong_missing_and_extra_keys():
    n = net()
    sd = n.torch_state_dict()
    expected = rf"^state_dict: expected PyTorch's names of this network's parameters {THEIRS}; "
    with pytest.raises(ValueError, match=expected + r"'rnn\.weight_ih_l2' is unexpected$"):
        n.load_torch_state_dict(sd | {"rnn.weight_ih_l2": sd["rnn.weight_ih_l1"]})
    with pytest.raises(ValueError, match=expected + r"'head\.bias' is missing$"):
        n.load_torch_state_dict({k: v for k, v in sd.items() if k != "head.bias"})
    with pytest.raises(ValueError, match=expected + r"'rnn\.weight_ih_10' is unexpected and 'rnn\.weight_ih_l0' is "
                                                    r"missing$"):
        n.load_torch_state_dict({("rnn.weight_ih_10" if k == "rnn.weight_ih_l0" else k): v for k, v in sd.items()})
    with pytest.raises(ValueError, match=expected + r"'embedding\.weight', .*, 'head\.bias' are missing$"):
        n.load_torch_state_dict({})
    with pytest.raises(ValueError, match=r"are missing \('E' is bptt's name for 'embedding\.weight': bptt-named "
                                         r"arrays go in net\.params\)$"):
        n.load_torch_state_dict(n.params)
    before = {k: v.copy() for k, v in n.params.items()}
    with pytest.raises(ValueError):
        n.load_torch_state_dict(sd | {"extra": 1})
    assert all(np.array_equal(before[k], n.params[k]) for k in before)          # a refused dict changes nothing
