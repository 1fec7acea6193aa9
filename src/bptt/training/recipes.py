"""Named sets of bptt train's options: a recipe fills in every option it names that the command line
does not give (what is given wins), and config.json records the values, as if they had been typed.

    awd-lstm        AWD-LSTM (Merity, Keskar & Socher 2017, the word-level recipe later recurrent
                    language models build on), scaled to a 2-core CPU: 3 LSTM layers of 256 (the
                    paper's 1150) with the embedding tied to the readout, a window of 70, batch 20,
                    SGD at lr 30 switching to averaging (NT-ASGD), clipping at 0.25, weight decay
                    1.2e-6, weight drop 0.5 on U, locked dropout 0.4 / 0.25 / 0.4 (input, between
                    layers, output), embedding dropout 0.1, AR 2 and TAR 1, windows of variable length
                    around 70 -- the paper's PTB values for everything but the sizes. With
                    --adaptive-softmax (a large vocabulary on a CPU) the embedding is left untied.
    awd-lstm-paper  the same at the paper's sizes: embedding 400, 3 LSTM layers of 1150, batch 80. The
                    paper's last layer has 400 units so that the readout can share the embedding; here
                    every layer has 1150 cells projected to 400 (proj_size), the nearest uniform stack
                    (16.5M parameters at 10,000 words against the paper's 24M).

Sizes at 2 cores: a step of the paper's model is about 30x the work of awd-lstm's (1150^2 against
256^2 recurrent products, batch 80 against 20): hours per epoch of PTB on 2 cores against minutes.
"""

AWD_LSTM = {"level": "word", "cell": "lstm", "optimizer": "nt-asgd", "lr": 30.0, "clip": 0.25, "window": 70,
            "weight_decay": 1.2e-6, "weight_drop": 0.5, "dropout_input": 0.4, "dropout_hidden": 0.25,
            "dropout_output": 0.4, "dropout_embedding": 0.1, "alpha": 2.0, "beta": 1.0, "tie": True,
            "variable_window": True}

RECIPES = {
    "awd-lstm": AWD_LSTM | {"layers": 3, "hidden": 256, "embedding": 256, "batch": 20},
    "awd-lstm-paper": AWD_LSTM | {"layers": 3, "hidden": 1150, "proj_size": 400, "embedding": 400, "batch": 80},
}


def apply(name, given):
    """The options given on the command line completed by the recipe called name: (the options, the
    recipe's values that were used). With the adaptive softmax asked for, the embedding is not tied:
    that readout has no matrix to share with it."""
    if name not in RECIPES:
        raise ValueError(f"recipe: expected one of {', '.join(RECIPES)}; got {name!r}")
    untied = given.get("adaptive_softmax") is not None
    used = {k: v for k, v in RECIPES[name].items() if k not in given and not (k == "tie" and untied)}
    return given | used, used
