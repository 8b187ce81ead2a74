"""Matplotlib set up once for every figure of the reports: no display (Agg), one style, one DPI."""
from pathlib import Path

DPI = 120


def pyplot():
    """matplotlib.pyplot on the Agg backend with the reports' style (imported when first drawn:
    the readers and statistics need no matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                         "figure.dpi": DPI, "savefig.dpi": DPI})
    return plt


def save(fig, out: Path, name: str) -> str:
    """Writes `fig` to OUT/name, closes it and returns `name` (what the Markdown embeds)."""
    fig.savefig(out / name, bbox_inches="tight")
    pyplot().close(fig)
    return name
