"""What the command-line tests share: a small text, the options of a model that trains in
milliseconds, and the fixture that writes the text to a file."""

import pytest

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
SMALL = ["--hidden", "10", "--layers", "1", "--embedding", "5", "--batch", "3", "--window", "6",
         "--eval-every", "4", "--eval-batch", "2", "--log-every", "1"]


@pytest.fixture
def text(tmp_path):
    """The path of a file holding TEXT."""
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)
