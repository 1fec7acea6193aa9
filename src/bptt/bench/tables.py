"""The benchmark's results: run() and step_cost() measure and print their rows as a table as they
go; markdown() writes them with the machine they were measured on."""

import statistics

from .. import checks
from .harness import check_workload, gemm_peak, machine, measure
from .runners import FRAMEWORKS, LABELS, available, unsupported
from .workload import config, label

COLUMNS = [("config", "config", "<14", "{}"), ("framework", "framework", "<9", "{}"),
           ("tokens_per_s", "tokens/s", ">9", "{:.0f}"), ("spread", "spread", ">15", "{}"),
           ("ms_per_step", "ms/step", ">8", "{:.1f}"), ("gflops", "GFLOP/s", ">8", "{:.1f}"),
           ("mfu", "MFU", ">5", "{:.0%}"), ("valid_loss", "valid loss", ">10", "{:.4f}"),
           ("vs_fastest", "vs fastest", ">10", "{:.2f}"), ("peak_rss_mb", "peak RSS (MB)", ">13", "{:.0f}"),
           ("compile_s", "compile (s)", ">11", "{:.2f}")]


LENGTH_COLUMNS = [("config", "config", "<14", "{}"), ("T", "T", ">6", "{}"), ("framework", "framework", "<9", "{}"),
                  ("ms_per_step", "ms/step", ">9", "{:.1f}"), ("us_per_t", "µs per t", ">9", "{:.0f}"),
                  ("peak_rss_mb", "peak RSS (MB)", ">13", "{:.0f}"), ("compile_s", "compile (s)", ">11", "{:.2f}")]


def machine_line():
    """The CPU the rows are measured on, and the vector width of bptt's kernels there."""
    info = machine()
    return (f"CPU: {info['cpu']}, {info['cores']} cores; bptt's kernels: {info['vector width']}; "
            f"bf16: {info['bf16 path']}")


def cell_text(row, key, fmt):
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def format_header(columns):
    return " ".join(f"{title:{align}}" for _, title, align, _ in columns)


def format_row(row, columns):
    return " ".join(f"{cell_text(row, key, fmt):{align}}" for key, _, align, fmt in columns)


def checked(steps, repeats, warmup, frameworks, out):
    """Validate the counts; return the frameworks that are installed."""
    checks.positive_int("steps", steps)
    checks.positive_int("repeats", repeats)
    checks.positive_int("warmup", warmup, minimum=0)
    return available(frameworks, out)


def able(frameworks, cfg, out):
    """The frameworks that can run cfg's workload; each other one is reported through out."""
    keep = []
    for f in frameworks:
        reason = unsupported(f, cfg)
        if reason:
            out(f"{LABELS[f]} skipped for {label(cfg)}: {reason}")
        else:
            keep.append(f)
    return keep


def run(configs, steps=20, warmup=3, repeats=3, frameworks=FRAMEWORKS, out=print, rss=True, peak=None):
    """Benchmark each configuration (a name of CONFIGS or a TrainConfig) on each framework available,
    printing a table through out as it goes. A configuration is a language model (char or word
    level, on Tiny Shakespeare or cfg.data) or a classifier (cfg.task "classify" on cfg.data: tokens
    are the real ones, padding excluded), with cfg's optimizer (adam or sgd), lr, clip and dropout.
    Returns one dict per (configuration, framework): config,
    framework (bptt, PyTorch, JAX), T, batch, tokens_per_s (median over repeats), tokens_per_s_min,
    tokens_per_s_max, spread, ms_per_step, gflops, mfu (over peak_gflops, the NumPy float32 GEMM rate:
    when not given, measured before the first configuration and again before each next one, the best
    so far kept, so that a busy moment does not lower it), valid_loss, vs_fastest (median rate over the
    fastest's), peak_rss_mb (None with rss=False) and compile_s (the first call: numba's cache load
    or compilation for bptt, XLA's compilation for JAX; None for PyTorch)."""
    cfgs = [config(c) for c in configs]
    frameworks = checked(steps, repeats, warmup, frameworks, out)
    if not frameworks:
        return []
    for cfg in cfgs:                              # every configuration's errors before the table starts
        check_workload(cfg)
    given, peak = peak, peak or gemm_peak()
    out(machine_line())
    out(f"float32 GEMM peak of this machine (NumPy, 1024^3): {peak / 1e9:.0f} GFLOP/s")
    out(format_header(COLUMNS))
    rows = []
    for i, cfg in enumerate(cfgs):
        if i and not given:
            peak = max(peak, gemm_peak())
        name = label(cfg)
        running = able(frameworks, cfg, out)
        if not running:
            continue
        results = measure(cfg, running, steps, warmup, repeats, rss=rss)
        best = max(statistics.median(r["rates"]) for r in results)
        for r in results:
            med, flop_rate = statistics.median(r["rates"]), statistics.median(r["flop_rates"])
            row = {"config": name, "framework": LABELS[r["framework"]], "T": cfg.window, "batch": cfg.batch,
                   "vocabulary": r["V"], "classes": r["K"],
                   "tokens_per_s": med, "tokens_per_s_min": min(r["rates"]), "tokens_per_s_max": max(r["rates"]),
                   "spread": f"{min(r['rates']):.0f}-{max(r['rates']):.0f}", "ms_per_step": r["ms_per_step"],
                   "gflops": flop_rate / 1e9, "mfu": flop_rate / peak, "peak_gflops": peak / 1e9,
                   "valid_loss": r["valid_loss"], "vs_fastest": med / best, "peak_rss_mb": r.get("peak_rss_mb"),
                   "compile_s": r["compile_s"]}
            rows.append(row)
            out(format_row(row, COLUMNS))
        losses = {LABELS[r["framework"]]: r["valid_loss"] for r in results}
        if len(losses) > 1:
            spread = max(losses.values()) - min(losses.values())
            out(f"{'':15}validation losses differ by at most {spread:.1e}")
    if rows and rows[-1]["peak_gflops"] > rows[0]["peak_gflops"]:
        out(f"float32 GEMM peak re-measured between configurations: {peak / 1e9:.0f} GFLOP/s at best "
            f"(each row's MFU is over the best measured before it)")
    return rows


def step_cost(cfg="lstm-h256", lengths=(16, 64, 256, 1024), steps=5, warmup=2, repeats=1, frameworks=FRAMEWORKS,
              out=print, rss=True):
    """Cost of one training step as the window T grows: for each T and framework, ms per step (median
    over repeats of `steps` timed steps, frameworks in alternation), µs per time step (ms/step / T:
    flat when the cost is linear in T) and the peak RSS of each framework's worker process. Returns the rows printed."""
    base = config(cfg)
    if base.task != "lm":
        raise ValueError(f"lengths: the cost of a step as the window T grows is measured on a language model; "
                         f"got task={base.task!r}")
    for T in lengths:
        checks.positive_int("T", T)
    frameworks = checked(steps, repeats, warmup, frameworks, out)
    if not frameworks:
        return []
    for T in lengths:
        check_workload(base.replace(window=T))
    out(machine_line())
    out(format_header(LENGTH_COLUMNS))
    rows = []
    for T in lengths:
        c = base.replace(window=T)
        for r in measure(c, able(frameworks, c, out), steps, warmup, repeats, validate=False, rss=rss):
            row = {"config": label(base), "T": T, "framework": LABELS[r["framework"]], "batch": c.batch,
                   "ms_per_step": r["ms_per_step"], "us_per_t": 1000 * r["ms_per_step"] / T,
                   "peak_rss_mb": r.get("peak_rss_mb"), "compile_s": r["compile_s"]}
            rows.append(row)
            out(format_row(row, LENGTH_COLUMNS))
    return rows


def markdown(rows, columns=COLUMNS, info=None, title="bptt training speed"):
    """A Markdown document: the machine details, then the rows as a table."""
    info = info or machine()
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in info.items()]
    peaks = [r["peak_gflops"] for r in rows if r.get("peak_gflops")]
    if peaks:
        lines.append(f"- **float32 GEMM peak** (NumPy, 1024^3, the MFU denominator): {max(peaks):.0f} GFLOP/s")
    lines += ["", "| " + " | ".join(t for _, t, _, _ in columns) + " |",
              "|" + "|".join(":---" if a[0] == "<" else "---:" for _, _, a, _ in columns) + "|"]
    lines += ["| " + " | ".join(cell_text(r, k, f) for k, _, _, f in columns) + " |" for r in rows]
    losses = {}
    for r in rows:
        if r.get("valid_loss") is not None:
            losses.setdefault(r["config"], []).append(r["valid_loss"])
    agree = [f"{c} {max(v) - min(v):.1e}" for c, v in losses.items() if len(v) > 1]
    if agree:
        lines += ["", "Largest difference between the frameworks' validation losses: " + ", ".join(agree) + "."]
    return "\n".join(lines) + "\n"
