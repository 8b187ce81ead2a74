"""The screens of `some top` as Rich renderables: the summary row of each run, and the detail of the
focused run (its layer: expert load bars, routing metrics as sparklines, co-activation pairs, key
drift; the loss and val PPL curves with the unigram line; throughput, ETA, the latest sample).

Everything takes `width` (the terminal's columns) and `ascii_only`: on a narrow terminal the
panels stack instead of standing side by side, and a terminal whose encoding cannot show block
characters gets ASCII bars and sparklines. Colour is Rich's business: it drops styles by itself
on a colourless terminal (TERM=dumb, NO_COLOR).

Legend: E experts.
"""
import math

import numpy as np
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from some_tools import analytics
from some_tools.top.run import Run

SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-~=+*#"
EIGHTHS = " ▏▎▍▌▋▊▉"
WIDE = 110         # from this many columns the detail panels stand side by side
MAX_BARS = 16      # expert rows shown per layer; the rest are summarised in one line


def fmt_num(x, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def fmt_rate(x) -> str:
    if x is None:
        return "—"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def resample(values: list[float], width: int) -> list[float]:
    """At most `width` values: the means of equal runs of consecutive values (all of them when they fit)."""
    if len(values) <= width:
        return list(values)
    edges = np.linspace(0, len(values), width + 1).astype(int)
    return [float(np.mean(values[a:b])) for a, b in zip(edges[:-1], edges[1:])]


def sparkline(values: list[float], width: int, ascii_only: bool = False, lo: float | None = None,
              hi: float | None = None) -> str:
    """One character per value (resampled to `width`), its height the value between lo and hi (default:
    the values' own range)."""
    chars = SPARK_ASCII if ascii_only else SPARK
    vals = resample([v for v in values if v is not None and math.isfinite(v)], width)
    if not vals:
        return ""
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    span = hi - lo
    if span <= 0:
        return chars[len(chars) // 2] * len(vals)
    return "".join(chars[min(len(chars) - 1, max(0, int((v - lo) / span * (len(chars) - 1) + 0.5)))] for v in vals)


def bar(fraction: float, width: int, ascii_only: bool = False) -> str:
    """A horizontal bar filling `fraction` of `width` cells, in eighths of a cell where the font allows."""
    fraction = min(max(fraction, 0.0), 1.0)
    if ascii_only:
        return "#" * int(round(fraction * width))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")


# ---------------------------------------------------------------------------------------------
# Several runs: one summary row each
# ---------------------------------------------------------------------------------------------

def _routing_values(run: Run, key: str) -> list[float]:
    """`key` of every layer in the newest eval line (else training line)."""
    line = run.m.evals[-1] if run.m.evals else run.m.train[-1] if run.m.train else None
    return [r[key] for r in (line or {}).get("routing") or [] if r.get(key) is not None]


def summary_table(runs: list[Run], focus: int, width: int, ascii_only: bool) -> Table:
    """One row per run; on a narrow terminal the less telling columns go first (Rich would crop the row)."""
    cols = [("run", "left"), ("status", "left"), ("step", "right"), ("loss", "right"), ("val PPL", "right"),
            ("unigram", "right"), ("tok/s", "right"), ("ETA", "right"), ("Gini", "right"), ("dead", "right")]
    drop = set() if width >= 100 else {"unigram", "Gini", "dead"} if width >= 64 else {"unigram", "Gini", "dead",
                                                                                        "loss", "tok/s"}
    cols = [c for c in cols if c[0] not in drop]
    t = Table(title="runs" if "Gini" in drop else "runs (newest eval: Gini mean over layers, dead experts summed)",
              title_justify="left")
    for col, just in cols:
        # The run's name may wrap but keeps some width: Rich would otherwise squeeze it away first.
        t.add_column(col, justify=just, no_wrap=col != "run",
                     min_width=min(26, 2 + max(len(r.name) for r in runs)) if col == "run" else None)
    for i, r in enumerate(runs):
        last_eval = r.m.evals[-1] if r.m.evals else {}
        last = r.m.train[-1] if r.m.train else {}
        gini, dead = _routing_values(r, "gini"), _routing_values(r, "dead_experts")
        step = r.step
        mark = (">" if ascii_only else "▶") if i == focus else " "
        cells = {"run": f"{mark} {r.name}", "status": r.status,
                 "step": f"{step}/{r.max_steps or '?'}" if step is not None else "—",
                 "loss": fmt_num(last.get("loss")), "val PPL": fmt_num(last_eval.get("val_ppl"), ".2f"),
                 "unigram": fmt_num(last_eval.get("unigram_ppl"), ".2f"), "tok/s": fmt_rate(last.get("tokens_per_s")),
                 "ETA": fmt_duration(r.eta_s()), "Gini": fmt_num(float(np.mean(gini)) if gini else None),
                 "dead": f"{sum(dead):.0f}" if dead else "—"}
        t.add_row(*(cells[c] for c, _ in cols), style="bold" if i == focus else None)
    return t


# ---------------------------------------------------------------------------------------------
# One run in detail
# ---------------------------------------------------------------------------------------------

def header(run: Run, index: int, n_runs: int) -> Text:
    last = run.m.train[-1] if run.m.train else {}
    step, total = run.step, run.max_steps
    t = Text()
    t.append(f"{run.name}", style="bold")
    if n_runs > 1:
        t.append(f" (run {index + 1} of {n_runs})")
    t.append(f"  {run.status}", style="green" if run.status == "running" else "yellow")
    if step is None:
        t.append("  waiting for the first metrics line")
    else:
        t.append(f"  step {step}" + (f"/{total} ({100 * step / total:.0f}%)" if total else ""))
    t.append(f"  loss {fmt_num(last.get('loss'))}  tokens/s {fmt_rate(last.get('tokens_per_s'))}"
             f"  elapsed {fmt_duration(last.get('elapsed_s'))}  ETA {fmt_duration(run.eta_s())}")
    if last.get("rss_gib") is not None:
        t.append(f"  RSS {last['rss_gib']:.2f} GiB", style="dim")
    if run.note:
        t.append(f"\n{run.note}", style="red")
    return t


def load_panel(run: Run, layer: int, width: int, ascii_only: bool) -> Panel:
    """Eval-set load E·n_i/Σn of every expert, sorted (1 = fair share); dead experts marked."""
    lv = run.layers.get(layer)
    title = f"layer {layer}: expert load"
    if lv is None:
        return Panel(Text("no analytics file for this layer yet (written at each eval)", style="dim"), title=title)
    counts = lv.data.counts.astype(float)
    E, total = counts.size, counts.sum()
    load = E * counts / total if total > 0 else np.zeros(E)
    order = np.argsort(-load, kind="stable")
    top = max(float(load.max()), 1.0)
    bar_w = max(6, width - 30)
    rows = Text()
    shown = order[:MAX_BARS] if E > MAX_BARS else order
    for i in shown:
        dead = counts[i] == 0
        rows.append(f"{i:>4} ")
        if dead:
            rows.append("dead".ljust(bar_w), style="red")
        else:
            rows.append(bar(load[i] / top, bar_w, ascii_only).ljust(bar_w), style="cyan")
        rows.append(f" {load[i]:5.2f}")
        if lv.data.usage is not None:
            rows.append(f"  u {lv.data.usage[i]:5.2f}", style="dim")
        rows.append("\n")
    n_dead = int((counts == 0).sum())
    if E > len(shown):
        rest = order[len(shown):]
        rows.append(f"  … {len(rest)} more, load {load[rest].min():.2f}–{load[rest].max():.2f}\n", style="dim")
    rows.append(f"E = {E}, dead {n_dead}" + (f" ({', '.join(map(str, np.flatnonzero(counts == 0)[:12]))})"
                                             if n_dead else "")
                + f", Gini {analytics.gini(counts):.3f}; load / fair share, step {run.analytics_step}")
    return Panel(rows, title=title, title_align="left")


ROUTING_ROWS = [("gini", "Gini", ".3f", (0.0, 1.0)), ("entropy_norm", "entropy/logE", ".3f", (0.0, 1.0)),
                ("dead_experts", "dead", ".0f", None), ("churn", "churn", ".3f", (0.0, None)),
                ("top1_score", "top-1 score", ".3f", None), ("key_cos", "key cos", ".3f", None)]


def routing_panel(run: Run, layer: int, width: int, ascii_only: bool) -> Panel:
    spark_w = max(8, width - 28)
    t = Table.grid(padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(no_wrap=True, style="magenta")
    t.add_column(no_wrap=True, justify="right")
    for key, name, spec, bounds in ROUTING_ROWS:
        vals = run.series(layer, key)
        if not vals:
            continue
        lo, hi = bounds if bounds else (None, None)
        if key == "dead_experts":
            lo, hi = 0.0, max(max(vals), 1.0)
        t.add_row(name, sparkline(vals, spark_w, ascii_only, lo, hi), format(vals[-1], spec))
    lv = run.layers.get(layer)
    extra = Text()
    if lv is not None:
        strength = analytics.normalized_coactivation(lv.data.coact, lv.data.counts)
        pairs = analytics.top_edges(strength, 5)
        extra.append("top co-activation C_ij/√(n_i n_j): ")
        extra.append(", ".join(f"{i}–{j} {w:.2f}" for i, j, w in pairs) or "none (top_k = 1 or no tokens)")
        extra.append("\nkey drift 1−cos: ")
        if lv.drift is not None:
            extra.append(f"mean {lv.drift.mean:.4f}, max {lv.drift.max:.4f} (expert {lv.drift.argmax}) "
                         f"since step {lv.drift.since}")
            if len(lv.drift_history) > 1:
                extra.append("  " + sparkline(lv.drift_history, max(8, width // 4), ascii_only), style="magenta")
        elif lv.data.keys is None:
            extra.append("no keys (not a SoME layer)")
        else:
            extra.append("needs two analytics files")
    if not t.row_count:
        t.add_row("no routing metrics for this layer yet", "", "")
    return Panel(Group(t, extra), title=f"layer {layer}: routing over steps", title_align="left")


def ppl_chart(run: Run, width: int, height: int, ascii_only: bool) -> Text:
    """Val PPL at each eval (points) and train PPL exp(loss) (dots) against the unigram PPL of the same
    val tokens (a line), on a log scale: what the model must beat to use any context."""
    evals = [e for e in run.m.evals if e.get("val_ppl")]
    train = [(t["step"], math.exp(min(t["loss"], 50))) for t in run.m.train if t.get("loss") is not None]
    uni = [e["unigram_ppl"] for e in evals if e.get("unigram_ppl")]
    pts = [(e["step"], e["val_ppl"]) for e in evals]
    values = [v for _, v in pts + train] + uni
    if not values:
        return Text("no loss yet", style="dim")
    lo, hi = math.log(min(values)), math.log(max(values))
    if hi - lo < 1e-9:
        hi = lo + 1.0
    last_step = max(s for s, _ in pts + train) if pts or train else 1
    plot_w = max(10, width - 10)
    grid = [[(" ", None) for _ in range(plot_w)] for _ in range(height)]

    def cell(step, v):
        x = min(plot_w - 1, int(step / max(last_step, 1) * (plot_w - 1)))
        y = height - 1 - int(round((math.log(v) - lo) / (hi - lo) * (height - 1)))
        return x, y

    if uni:
        _, y = cell(0, uni[-1])
        for x in range(plot_w):
            grid[y][x] = ("-" if ascii_only else "─", "yellow")
    for s, v in train:
        x, y = cell(s, v)
        grid[y][x] = ("." if ascii_only else "·", "blue")
    for s, v in pts:
        x, y = cell(s, v)
        grid[y][x] = ("o" if ascii_only else "●", "bold red")
    out = Text()
    for row, cells in enumerate(grid):
        label = f"{math.exp(hi):8.1f} " if row == 0 else f"{math.exp(lo):8.1f} " if row == height - 1 else " " * 9
        out.append(label, style="dim")
        for ch, style in cells:
            out.append(ch, style=style)
        out.append("\n")
    out.append(" " * 9 + "● val PPL" if not ascii_only else " " * 9 + "o val PPL", style="red")
    out.append("  · train exp(loss)" if not ascii_only else "  . train exp(loss)", style="blue")
    if uni:
        out.append(f"  ─ unigram PPL {uni[-1]:.2f}" if not ascii_only else f"  - unigram PPL {uni[-1]:.2f}",
                   style="yellow")
    out.append(f"   steps 0–{last_step}", style="dim")
    return out


def curves_panel(run: Run, width: int, ascii_only: bool) -> Panel:
    losses = [t["loss"] for t in run.m.train if t.get("loss") is not None]
    last_eval = run.m.evals[-1] if run.m.evals else None
    body = Text()
    body.append("train loss ")
    body.append(sparkline(losses, max(8, width - 30), ascii_only), style="blue")
    body.append(f" {fmt_num(losses[-1] if losses else None)}\n")
    if last_eval:
        uni = last_eval.get("unigram_ppl")
        body.append(f"val PPL {fmt_num(last_eval.get('val_ppl'), '.2f')} at step {last_eval['step']}, unigram PPL "
                    f"{fmt_num(uni, '.2f')}")
        if uni and last_eval.get("val_ppl"):
            body.append(f" ({last_eval['val_ppl'] / uni:.2f}× unigram)")
        body.append("\n")
    body.append_text(ppl_chart(run, width - 4, 6, ascii_only))
    return Panel(body, title="loss and perplexity", title_align="left")


def sample_panel(run: Run) -> Panel:
    last = next((e for e in reversed(run.m.evals) if e.get("sample")), None)
    if last is None:
        return Panel(Text("no eval sample yet", style="dim"), title="latest eval sample", title_align="left")
    text = "".join(c if c.isprintable() else " " for c in last["sample"])
    return Panel(Text(text), title=f"latest eval sample (step {last['step']})", title_align="left")


def layer_tabs(run: Run, layer: int | None) -> Text:
    t = Text("layers: ")
    ids = run.layer_ids
    if not ids:
        t.append("no routed layers (a dense run, or no routing line yet)", style="dim")
    for lid in ids:
        t.append(f" {lid} ", style="reverse bold" if lid == layer else None)
    return t


def run_detail(run: Run, index: int, n_runs: int, layer: int | None, width: int, ascii_only: bool) -> Group:
    parts = [header(run, index, n_runs), layer_tabs(run, layer)]
    wide = width >= WIDE
    half = width // 2 if wide else width
    if layer is not None:
        load, routing = load_panel(run, layer, half, ascii_only), routing_panel(run, layer, half, ascii_only)
        parts += side_by_side(load, routing) if wide else [routing, load]
    curves, sample = curves_panel(run, half, ascii_only), sample_panel(run)
    parts += side_by_side(curves, sample) if wide else [curves, sample]
    return Group(*parts)


def side_by_side(left, right) -> list:
    """Two panels in one row of equal halves (wide terminals)."""
    g = Table.grid(expand=True)
    g.add_column(ratio=1)
    g.add_column(ratio=1)
    g.add_row(left, right)
    return [g]


def footer(paused: bool, n_runs: int) -> Text:
    t = Text("keys: ", style="dim")
    t.append("n/→ next layer  p/← previous layer  ", style="dim")
    if n_runs > 1:
        t.append("tab/↓ next run  ↑ previous run  ", style="dim")
    t.append("space pause  q quit", style="dim")
    if paused:
        t.append("   PAUSED (not reading the files)", style="bold yellow")
    return t


def screen(runs: list[Run], focus: int, layer: int | None, width: int, ascii_only: bool, paused: bool) -> Group:
    parts = []
    if len(runs) > 1:
        parts.append(summary_table(runs, focus, width, ascii_only))
    parts.append(run_detail(runs[focus], focus, len(runs), layer, width, ascii_only))
    parts.append(footer(paused, len(runs)))
    return Group(*parts)
