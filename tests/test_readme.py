"""The README's API example runs as written."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    net, grads, logits = scope["net"], scope["grads"], scope["logits"]
    assert logits.shape == (64, 32, 65) and grads.keys() == net.params.keys()
    assert abs(scope["loss"] - np.log(65)) < 0.1          # about ln K at initialisation
    exec(compile(blocks[1], "README.md", "exec"), scope)
    assert "rnn.weight_hh_l1" in scope["torch_grads"]
