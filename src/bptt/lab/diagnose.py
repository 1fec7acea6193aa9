"""bptt diagnose: the gradient-flow report of a trained run, as self-contained HTML."""

from pathlib import Path

import numpy as np

from ..files import FileError
from ..training import data, problems, rundir, tasks
from . import diagnostics


def measurement_batch(task, cfg, T, rng):
    """(x, y, lengths, loss) for measuring: a batch whose loss sits at the last step."""
    if isinstance(task, tasks.LanguageModel):
        stream = data.batchify(task.valid, 8)[:T + 1]
        return stream[:-1], stream[-1], None, "cross_entropy"
    if isinstance(task, tasks.Classification):
        x, lengths = data.pad_batch(task.valid[:8])
        return x, task.valid_y[:8], lengths, "cross_entropy"
    x, y = task.problem.generate(T, 8, rng)
    return x, (y[-1] if task.problem.target == "every" else y), None, task.problem.loss


def training_flow(run):
    return [r for r in run.records() if "flow" in r]


def destinations(run, out):
    """(report path, figures folder), both checked writable before any work: the figures go to
    RUN/diagnose/ (the run's own folder); a report elsewhere must be a new file."""
    run.check_directory("RUN_DIR")
    if not run.is_run():
        raise FileError(f"RUN_DIR: {run.path} is not a bptt run directory")
    figs = run.path / "diagnose"
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise FileError(f"--out: {out} is a directory; give the path of the report file, e.g. "
                            f"{out / 'report.html'}")
        if out.exists():
            raise FileError(f"--out: {out} exists; bptt does not overwrite a file it did not write: choose a new path")
    out = out or figs / "report.html"
    for folder in dict.fromkeys((figs, out.parent)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"{folder}: cannot create the folder ({e.strerror})") from None
        rundir.check_writable(folder)
    return out, figs


def write(run, length=None, out=None, compare_gradients=False):
    from . import figures, page

    cfg = run.config()
    if cfg.task in problems.PROBLEMS and length is not None:
        problems.check_length(cfg.task, length, "--length")
    stream = gradient_stream(run) if compare_gradients else None      # refused before anything is written
    task = run.task(cfg)                                                 # for its validation data
    net, meta = run.network("best")
    out, figs = destinations(run, out)                                   # after the run's files are read
    params = {k: v.astype(np.float64) for k, v in net.params.items()}      # measure in float64
    arch = net.arch
    T = length or (cfg.length if cfg.task in problems.PROBLEMS else cfg.window)
    x, y, lengths, loss = measurement_batch(task, cfg, T, np.random.default_rng(0))

    norms = diagnostics.gradient_norms(params, arch, x, y, target="last", loss=loss, lengths=lengths)
    T = len(x)
    norms_png = figures.gradient_norms({f"layer {k}": norms[k] for k in range(arch.num_layers)},
                                       figs / "gradient_norms", f"||dL_T/dh_k|| of the trained model (T={T})")
    ratio = norms[-1, 0] / norms[-1, -1] if norms[-1, -1] else float("nan")
    sv = diagnostics.jacobian_singular_values(params, arch, x, lengths=lengths)
    sv_png = figures.singular_values({f"layer {k}": s for k, s in enumerate(sv)}, figs / "singular_values")
    spectrum_rows = [{"matrix": name, "gate": g["gate"], "spectral radius": f"{g['spectral_radius']:.3f}",
                      "largest singular value": f"{g['singular_values'][0]:.3f}",
                      "smallest singular value": f"{g['singular_values'][-1]:.3g}"}
                     for name, gates in diagnostics.spectrum(params, arch).items() for g in gates]
    sections = [
        ("How much of the loss at the end reaches each step", norms_png,
         f"The gradient of the loss at step T with respect to each hidden state h_k. At the top layer it is "
         f"{ratio:.2g} times as large at k = 0 as at k = T: "
         + ("it vanishes on the way back, so early inputs barely influence learning." if ratio < 1e-3 else
            "it explodes on the way back." if ratio > 1e3 else
            "it survives the trip, so long-range dependencies can be learned.")
         + " (Measured in float64 on 8 validation sequences.)", None),
        ("The Jacobian product dh_T/dh_k", sv_png,
         "BPTT multiplies one step Jacobian per step. Solid lines: the largest singular value of the product, "
         "the most any direction is amplified; dashed: the smallest. Below 1 and falling with distance: "
         "vanishing; above 1 and growing: exploding.", None),
        ("Spectrum of the recurrent matrices", None,
         "For an Elman RNN, dh_t/dh_{t-1} = diag(f'(a_t)) U: a spectral radius of U below 1 (below 4 with "
         "sigmoid, whose slope is at most 1/4) makes gradients vanish; well above 1 allows them to explode.",
         spectrum_rows),
    ]
    if isinstance(task, tasks.LanguageModel):
        sections.append(truncation_section(params, arch, task, T, figs))
    flow = training_flow(run)
    if flow:
        sections.append(flow_section(flow, figs))
    if stream is not None:
        sections += comparison_sections(stream, figs)
    intro = (f"Run {run.path}: {cfg.cell} {cfg.layers}x{cfg.hidden}, task {cfg.task}, checkpoint of step "
             f"{meta['step']}.")
    return page.write(out, "bptt diagnose", sections, intro)


def truncation_section(params, arch, task, T, figs):
    """A language model's section on the bias of truncated BPTT, on one validation stretch."""
    from . import figures

    stream = data.batchify(task.valid, 4)[:min(T, 48) + 1]
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 48) if k < len(stream)} | {len(stream) - 1})
    rows = diagnostics.truncation_bias(params, arch, stream, ks)
    return ("The bias of truncated BPTT", figures.truncation(rows, figs / "truncation"),
            "Cosine similarity and relative error between the gradient of truncated BPTT that "
            "backpropagates k steps and the full gradient, on one validation stretch. At k covering "
            "the stretch the two are equal (cosine 1).",
            [{k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])


def flow_section(flow, figs):
    """The section on the gradient flow recorded during training (flow: its metrics records)."""
    from . import figures

    steps = [r["step"] for r in flow]
    top = np.array([r["flow"][-1] for r in flow])
    return ("Gradient flow during training", figures.flow_heatmap(steps, top, figs / "flow_heatmap"),
            "Each row is one recorded training step; each column a step k of the window; the colour "
            "is log10 ||dL/dh_k|| at the top layer. Bright to the left means the gradient reaches the "
            "start of the window.",
            [{"parameter": k, "gradient norm (last record)": f"{v:.4g}"}
             for k, v in flow[-1]["grad_norms"].items()])



def gradient_stream(run):
    """bptt compare-gradients' network and stream of the run (lab/compare.py), the network checked."""
    from . import compare

    try:
        stream = compare.of_run(run)
        compare.check_network(stream.arch)
    except FileError:
        raise
    except ValueError as e:
        raise ValueError(f"--compare-gradients: {e}") from None
    return stream


def comparison_sections(stream, figs):
    """bptt compare-gradients' sections (TBPTT(k), RTRL and UORO against full BPTT) on the run's
    stream; RTRL left out, and said so, where it would be too big (compare.check_rtrl)."""
    from . import compare

    size, flops = compare.rtrl_cost(stream.arch, stream.x.shape[1], len(stream.x))
    rtrl = size <= compare.MAX_RTRL_BYTES and flops <= compare.MAX_RTRL_FLOPS
    note = "" if rtrl else (f" RTRL is left out: its influence matrices would hold {size / 2**30:.2f} GiB and it "
                            f"would take {flops:.2g} multiply-adds, above the limits of lab/compare.py.")
    result = compare.compare(stream.params, stream.arch, stream.x, stream.y, stream.target, stream.loss, rtrl=rtrl)
    (heading, png, reading, rows), *others = compare.sections(result, figs)
    return [(heading, png, f"On {stream.source}. {reading}{note}", rows), *others]
