import itertools

import numpy as np
import pytest

import bptt
from bptt.model import engine
from bptt.reference.losses import log_softmax
from bptt.training import data, generate


def test_distribution_temperature_top_k_top_p():
    z = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.allclose(generate.distribution(z), [0.5, 0.3, 0.15, 0.05])
    assert np.allclose(generate.distribution(z, top_k=2), [0.625, 0.375, 0, 0])
    assert np.allclose(generate.distribution(z, top_p=0.75), [0.625, 0.375, 0, 0])    # 0.5 + 0.3 >= 0.75
    assert np.allclose(generate.distribution(z, top_p=0.79), [0.625, 0.375, 0, 0])
    assert np.allclose(generate.distribution(z, top_p=0.81), [0.5, 0.3, 0.15, 0] / np.float64(0.95))
    cold = generate.distribution(z, temperature=0.5)
    assert np.allclose(cold, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(np.array([0.5, 0.3, 0.15, 0.05]) ** 2))
    with pytest.raises(ValueError, match="temperature: expected a positive number"):
        generate.distribution(z, temperature=0)
    with pytest.raises(ValueError, match="top_p: expected a probability"):
        generate.distribution(z, top_p=1.5)


def test_sampling_is_reproducible_and_greedy_is_deterministic():
    net = bptt.Network("gru", 7, 8, 7, embedding_dim=4, seed=1)
    a = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(5))
    b = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(5))
    c = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 7
    g = generate.sample(net.params, net.arch, [1, 2], 20, None, greedy=True)
    # greedy by hand: feed the argmax back, one step at a time
    z, state = net.forward(np.array([[1], [2]]))
    for i in range(20):
        assert g[i] == z[-1, 0].argmax()
        z, state = net.forward(np.array([[g[i]]]), state)


def test_sampled_frequencies_follow_the_distribution():
    net = bptt.Network("rnn", 3, 2, 3, seed=0)
    net.params["V"][:] = 0
    net.params["c"][:] = np.log([0.6, 0.3, 0.1])
    ids = generate.sample(net.params, net.arch, [0], 20000, np.random.default_rng(0))
    freq = np.bincount(ids, minlength=3) / len(ids)
    assert np.allclose(freq, [0.6, 0.3, 0.1], atol=0.015)
    only_top = generate.sample(net.params, net.arch, [0], 200, np.random.default_rng(0), top_k=1)
    assert set(only_top) == {0}


def test_word_samples_become_lines():
    from bptt.training.data import Detokenizer

    def text(tokens, level):
        shown = Detokenizer(level)
        return "".join(shown.next(token) for token in tokens)

    assert text(["to", "be", "<eos>", "or", "<eos>", "<eos>", "not"], "word") == "to be\nor\n\nnot"
    assert text(list("ab\nc"), "char") == "ab\nc"


def test_prime_ids_read_a_prime_as_training_reads_text():
    """Words with <eos> at each line end, the last line left open unless the prime ends with one; no
    prime: a line start (the first token of a character vocabulary without a line end); an unknown
    character is named. bptt sample and bptt.load(...).sample both start from these."""
    from bptt.training import data

    words = data.Vocab(("<eos>", "<unk>", "cat", "the"), "word")
    ids, shown = generate.prime_ids(words, "the cat\nthe", "word")
    assert words.decode(ids) == ["the", "cat", "<eos>", "the"] and shown == "the cat\nthe"
    assert words.decode(generate.prime_ids(words, "the cat\n", "word")[0]) == ["the", "cat", "<eos>"]
    assert generate.prime_ids(words, "   ", "word") == (words.encode(["<eos>"]), "")
    chars = data.Vocab(("a", "b"), "char")
    assert chars.decode(generate.prime_ids(chars, "", "char")[0]) == ["a"]
    with pytest.raises(ValueError, match="prime: characters not in the training vocabulary: 'z'"):
        generate.prime_ids(chars, "az", "char")


# Greedy decoding and beam search, against brute force on a tiny vocabulary -----------------------

def tiny(cell, V, seed, layers=1):
    """A small random network in float64 on the reference engine: log p in exact arithmetic, nearly."""
    return bptt.Network(cell, V, 5, V, num_layers=layers, embedding_dim=3, seed=seed, engine="numpy")


def log_p(net, prime, continuations):
    """log p(c | prime) of each continuation c (N, n), scored independently of generate: one forward
    pass of prime + c from the initial state, all N side by side."""
    c = np.asarray(continuations, dtype=np.int64).reshape(len(continuations), -1)
    ids = np.concatenate([np.repeat(np.asarray(prime)[:, None], len(c), axis=1), c.T])     # (T, N)
    z, _ = net.forward(ids[:-1])
    logp = log_softmax(z[len(prime) - 1:])                     # (n, N, V): row i predicts c[:, i]
    return np.take_along_axis(logp, c.T[:, :, None], axis=2)[:, :, 0].sum(axis=0)


def greedy_by_hand(net, prime, length):
    """The argmax path, each step scored from scratch."""
    path = []
    for _ in range(length):
        z, _ = net.forward(np.array([*prime, *path])[:, None])
        path.append(int(np.argmax(z[-1, 0])))
    return path


def beam_by_definition(net, prime, length, K, stop=None):
    """Beam search as defined, from scratch: at each step the K best of every kept continuation
    extended by every token, by log p (equal: the better-ranked continuation, then the smaller
    token); those ending with the stop token are finished, and K finished end the search. The
    kept lists (live ones, their scores, finished ones), step by step."""
    V, kept, finished, steps = net.arch.output_size, [()], [], []
    for _ in range(length):
        candidates = [c + (t,) for c in kept for t in range(V)]
        scores = log_p(net, prime, candidates)
        ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:K]    # i = rank V + token
        finished += [candidates[i] for i in ranked if candidates[i][-1] == stop]
        live = [i for i in ranked if candidates[i][-1] != stop]
        kept = [candidates[i] for i in live]
        steps.append((kept, scores[live], list(finished)))
        if not kept or len(finished) >= K:
            break
    return steps


def beam_trace(net, prime, length, K, stop=None):
    weights = engine.evaluating(net.params, net.arch)
    z, state = generate.next_logits(net.params, net.arch, np.array(prime)[:, None], None, weights)
    return list(generate.beam_steps(net.params, net.arch, weights, z, state, length, K, stop))


@pytest.mark.parametrize("cell,V,length,seed", [("rnn", 3, 5, 7), ("gru", 4, 4, 0), ("lstm", 3, 4, 20),
                                                ("lstm", 4, 3, 18)])     # seeds where greedy is not the best
def test_greedy_and_beam_search_equal_brute_force(cell, V, length, seed):
    """Greedy is the argmax path; beam search with room for every continuation finds the most
    likely of all V^length, each scored by its own forward pass; beam 1 is greedy."""
    net = tiny(cell, V, seed, layers=2 if cell == "lstm" else 1)
    prime = [1, 0, 2]
    everything = list(itertools.product(range(V), repeat=length))
    best = everything[int(np.argmax(log_p(net, prime, everything)))]
    greedy = greedy_by_hand(net, prime, length)
    assert generate.sample(net.params, net.arch, prime, length, None, greedy=True).tolist() == greedy
    assert generate.sample(net.params, net.arch, prime, length, None, beam=1).tolist() == greedy
    assert generate.sample(net.params, net.arch, prime, length, None, beam=V ** length).tolist() == list(best)
    assert list(best) != greedy                                  # the search has something to find


@pytest.mark.parametrize("cell,V,K", [("rnn", 3, 2), ("gru", 4, 3), ("lstm", 3, 5), ("gru", 3, 9)])
def test_beam_search_keeps_the_k_best_at_every_step(cell, V, K):
    net = tiny(cell, V, seed=K)
    prime, length = [2, 1], 4
    steps = beam_trace(net, prime, length, K)
    expected = beam_by_definition(net, prime, length, K)
    assert len(steps) == length
    for beams, (kept, scores, finished) in zip(steps, expected, strict=True):
        assert [tuple(c) for c in beams.tokens.tolist()] == kept and finished == [] == list(beams.finished)
        assert np.allclose(beams.scores, scores, rtol=0, atol=1e-12)
    ids = generate.sample(net.params, net.arch, prime, length, None, beam=K)
    assert tuple(ids.tolist()) == expected[-1][0][0]


def test_beam_search_breaks_ties_by_rank_then_token():
    """Every token equally likely at every step: every continuation ties, and the kept ones are
    the better-ranked continuation's first, smaller tokens first."""
    net = tiny("gru", 3, seed=0)
    net.params["V"][:], net.params["c"][:] = 0, 0
    steps = beam_trace(net, [0], 3, 4)
    assert [b.tokens.tolist() for b in steps] == [[[0], [1], [2]], [[0, 0], [0, 1], [0, 2], [1, 0]],
                                                  [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]]
    assert generate.sample(net.params, net.arch, [0], 3, None, beam=4).tolist() == [0, 0, 0]


LINES = data.Vocab(("\n", "a", "b"), "char")                     # the line end is id 0


def finished_by_brute_force(net, prime, length, alpha):
    """The best of every continuation that stops (ends with its first line end, id 0) or runs to
    `length` tokens, by log p / ((5 + n) / 6)^alpha."""
    ends = [c for n in range(1, length + 1) for c in itertools.product(range(3), repeat=n)
            if (c[-1] == 0 or n == length) and 0 not in c[:-1]]
    scores = [log_p(net, prime, [c])[0] / ((5 + len(c)) / 6) ** alpha for c in ends]
    return list(ends[int(np.argmax(scores))])


def test_beam_search_with_a_line_end_ranks_by_gnmt_length_normalisation():
    net = tiny("gru", 3, seed=4)
    net.params["c"][0] -= 1.0                                    # line ends rarer than the other tokens
    prime, length, found = [1, 2], 4, {}
    for alpha in (0.0, 1.0, 3.0):
        best = finished_by_brute_force(net, prime, length, alpha)
        decoding = generate.Decoding(beam=3 ** length, length_penalty=alpha, stop_at_line_end=True)
        session = generate.Session(net.params, net.arch, decoding, vocab=LINES)
        found[alpha] = list(session.stream(prime, length))
        assert found[alpha] == best
    assert len(found[0.0]) < len(found[3.0])                     # a longer one wins when length is rewarded


@pytest.mark.parametrize("K", [2, 3])
def test_beam_search_with_a_stop_token_ends_when_k_have_finished(K):
    net = tiny("gru", 3, seed=4)
    net.params["c"][0] += 0.5                                    # line ends likely enough to finish some
    steps, expected = beam_trace(net, [1, 2], 8, K, stop=0), beam_by_definition(net, [1, 2], 8, K, stop=0)
    assert len(steps) == len(expected) < 8 and len(steps[-1].finished) >= K   # ended by K finished
    for beams, (kept, scores, finished) in zip(steps, expected, strict=True):
        assert [tuple(c) for c in beams.tokens.tolist()] == kept
        assert [tuple(h.tokens.tolist()) for h in beams.finished] == finished
        assert np.allclose(beams.scores, scores, rtol=0, atol=1e-12)
    session = generate.Session(net.params, net.arch, generate.Decoding(beam=K, stop_at_line_end=True), vocab=LINES)
    best = max(expected[-1][2], key=lambda c: log_p(net, [1, 2], [c])[0])
    assert tuple(session.stream([1, 2], 8)) == best


def test_sampling_and_greedy_stop_at_the_first_line_end():
    """The tokens drawn without a stop, cut after the first line end."""
    net = tiny("gru", 3, seed=4)
    net.params["c"][0] -= 1.0
    session = generate.Session(net.params, net.arch, generate.Decoding(stop_at_line_end=True),
                               np.random.default_rng(0), LINES)
    ids = list(session.stream([1, 2], 200))
    assert 1 < len(ids) < 200 and ids[-1] == 0 and 0 not in ids[:-1]
    assert ids == generate.sample(net.params, net.arch, [1, 2], 200, np.random.default_rng(0))[:len(ids)].tolist()
    greedy = generate.Decoding(greedy=True, stop_at_line_end=True)
    assert list(generate.Session(net.params, net.arch, greedy, vocab=LINES).stream([1, 2], 30)) == \
        greedy_by_hand(net, [1, 2], 30)                          # greedy never draws the line end here
    net.params["c"][0] += 20
    assert list(generate.Session(net.params, net.arch, greedy, vocab=LINES).stream([1, 2], 30)) == [0]


# A session: prompts that continue one text, the state carried ----------------------------------

def fed_steps(monkeypatch):
    """The time steps of every forward pass generation makes, as a list that grows."""
    steps, next_logits = [], generate.next_logits

    def counted(params, arch, ids, state, weights):
        steps.append(ids.shape)
        return next_logits(params, arch, ids, state, weights)

    monkeypatch.setattr(generate, "next_logits", counted)
    return steps


@pytest.mark.parametrize("decoding", [generate.Decoding(temperature=0.9), generate.Decoding(beam=3)],
                         ids=["sampled", "beam"])
def test_a_session_continues_one_text_and_runs_each_token_once(decoding, monkeypatch):
    """Prompt A, then prompt B: B's continuation is what one sample from A + A's continuation + B
    gives with the random numbers A's left; the state carried is the one that whole text leaves
    (its last token still to be fed), and each token is fed once (no prompt is run again)."""
    net = tiny("lstm", 5, seed=1, layers=2)
    A, B = [1, 2, 3], [4, 0]
    steps = fed_steps(monkeypatch)
    session = generate.Session(net.params, net.arch, decoding, np.random.default_rng(7))
    a = list(session.stream(A, 6))
    b = list(session.stream(B, 5))
    assert [T for T, _ in steps] == [3] + [1] * 5 + [3] + [1] * 4     # A; a but its last, which goes with B; b
    assert max(rows for _, rows in steps) == (decoding.beam or 1)
    one_go = np.random.default_rng(7)
    assert generate.sample(net.params, net.arch, A, 6, one_go, decoding.temperature, beam=decoding.beam).tolist() == a
    assert generate.sample(net.params, net.arch, A + a + B, 5, one_go, decoding.temperature,
                           beam=decoding.beam).tolist() == b
    _, whole = net.forward(np.array(A + a + B + b[:-1])[:, None])
    assert session.pending.tolist() == b[-1:]
    assert all(np.allclose(s, w, rtol=0, atol=1e-12) for s, w in zip(session.state, whole, strict=True))
    _, alone = net.forward(np.array(B + b[:-1])[:, None])       # what a session that forgot A would hold
    assert not all(np.allclose(s, w, rtol=0, atol=1e-6) for s, w in zip(session.state, alone, strict=True))


@pytest.mark.parametrize("vocab,A,B", [(data.Vocab(("\n", " ", "a", "b", "c"), "char"), "ab\n", "ca"),
                                       (data.Vocab(("<eos>", "<unk>", "cat", "sat", "the"), "word"), "the cat",
                                        "sat the\n")])
def test_a_session_of_text_reads_as_one_sample_of_all_of_it(vocab, A, B):
    """session.text: every prompt and continuation as one text; B's continuation is what one sample
    of that text up to B gives (words: a later prompt set apart by a space, as the model reads it)."""
    net = tiny("gru", 5, seed=2)
    session = generate.Session(net.params, net.arch, generate.Decoding(), np.random.default_rng(3), vocab)
    a = session.sample(A, 7)
    assert not a.endswith("\n")                                 # B goes on a's line
    shown, pieces = session.pieces(B, 6)
    before_b = session.text
    b = "".join(pieces)
    assert session.text == before_b + b and before_b == A + a + shown
    assert shown == (B if vocab.level == "char" else " " + B)
    rng = np.random.default_rng(3)
    rng.random(7)                                                # one number for each token of a
    once = generate.Session(net.params, net.arch, generate.Decoding(), rng, vocab)
    assert once.sample(before_b, 6) == b


@pytest.mark.parametrize("options,error,message", [
    (dict(beam=3, temperature=0.5), ValueError, "beam: searches for the most likely continuation, drawing nothing; "
                                                "temperature does not apply"),
    (dict(beam=3, greedy=True, top_k=2, top_p=0.5), ValueError, "beam: .*; greedy, top_k and top_p do not apply"),
    (dict(greedy=True, top_p=0.5), ValueError, "greedy: takes the most likely token; top_p does not apply"),
    (dict(beam=0), ValueError, "beam: expected a positive int, got 0"),
    (dict(beam=2.0), TypeError, r"beam: expected a positive int, got 2.0 \(float\)"),
    (dict(beam=True), TypeError, "beam: expected a positive int, got True"),
    (dict(length_penalty=0.6), ValueError, "length_penalty: ranks beam search's continuations of different lengths, "
                                           "which need beam and stop_at_line_end"),
    (dict(beam=2, length_penalty=0.6), ValueError, "length_penalty: .* need beam and stop_at_line_end"),
    (dict(beam=2, stop_at_line_end=True, length_penalty=-1), ValueError,
     "length_penalty: expected a finite float >= 0, got -1"),
    (dict(beam=2, stop_at_line_end=True, length_penalty=float("nan")), ValueError, "length_penalty: expected a finite"),
    (dict(stop_at_line_end=1), TypeError, "stop_at_line_end: expected True or False, got 1"),
])
def test_decoding_options_that_would_change_nothing_are_refused(options, error, message):
    with pytest.raises(error, match=f"^{message}"):
        generate.Decoding(**options).checked()
    assert generate.Decoding(beam=2, stop_at_line_end=True, length_penalty=0.6).checked().beam == 2


def test_a_session_says_what_it_lacks():
    net = tiny("rnn", 3, seed=0)
    with pytest.raises(TypeError, match="rng: sampling needs a np.random.Generator, got None"):
        generate.Session(net.params, net.arch)
    with pytest.raises(ValueError, match="stop_at_line_end: needs a vocabulary"):
        generate.Session(net.params, net.arch, generate.Decoding(greedy=True, stop_at_line_end=True))
    with pytest.raises(ValueError, match=r"stop_at_line_end: the training vocabulary has no line end \('\\n'\)"):
        generate.Session(net.params, net.arch, generate.Decoding(greedy=True, stop_at_line_end=True),
                         vocab=data.Vocab(("a", "b", "c"), "char"))
    session = generate.Session(net.params, net.arch, generate.Decoding(greedy=True), vocab=LINES)
    with pytest.raises(ValueError, match="prime: characters not in the training vocabulary: 'z'"):
        session.pieces("az", 3)
    assert session.sample("ab", 3) and session.text.startswith("ab")
    with pytest.raises(ValueError, match="prompt: characters not in the training vocabulary: 'z'"):
        session.pieces("z", 3)
    with pytest.raises(ValueError, match="length: expected a positive int, got 0"):
        session.stream([1], 0)
    with pytest.raises(TypeError, match="vocab: a prompt given as text needs the training vocabulary"):
        generate.Session(net.params, net.arch, generate.Decoding(greedy=True)).sample("ab", 3)


def test_a_bidirectional_network_does_not_generate():
    """Its reverse direction would read each token drawn as a whole sequence of one: refused, as the
    stepper refuses it."""
    net = bptt.Network("gru", 5, 4, 5, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional: a bidirectional network reads each whole sequence"):
        generate.sample(net.params, net.arch, [0, 1], 3, np.random.default_rng(0))
