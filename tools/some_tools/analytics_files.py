"""The one reader of a run's routing-analytics files RUN/analytics/step_XXXXXXXX.h5 (docs/design.md §9),
shared by every tool: one file per eval, one group /layers/L per routed layer with `counts` and
`coactivation` (every router) and `keys`, `usage` (SoME only).

Legend: E experts, d model width.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from some_tools.errors import InputError

FILE_RE = re.compile(r"^step_(\d{8})\.h5$")


@dataclass
class LayerData:
    layer: int
    keys: np.ndarray | None   # (E, d) SoME routing keys; None for the baselines
    usage: np.ndarray | None  # (E,) Knowledge-Gravity usage u_i (EMA or cumulative; 1 = fair share); SoME only
    counts: np.ndarray        # (E,) eval-set selections n_i
    coact: np.ndarray         # (E, E) eval-set co-activation counts


def list_files(run: Path) -> dict[int, Path]:
    """{step: path} of RUN/analytics/step_*.h5, by ascending step ({} when there are none)."""
    d = run / "analytics"
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        m = FILE_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def read(path: Path) -> list[LayerData]:
    """The routed layers of one analytics file, by layer. InputError naming the file when it is not
    HDF5 or lacks /layers or a layer's counts / coactivation."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise InputError(f"{path}: no /layers group")
            out = []
            for name in sorted(f["layers"], key=int):
                g = f["layers"][name]
                missing = [k for k in ("counts", "coactivation") if k not in g]
                if missing:
                    raise InputError(f"{path}: /layers/{name} lacks {', '.join(missing)}")
                opt = {k: (g[k][()] if k in g else None) for k in ("keys", "usage")}
                out.append(LayerData(int(name), opt["keys"], opt["usage"], g["counts"][()], g["coactivation"][()]))
            return out
    except OSError as e:
        raise InputError(f"{path}: cannot read as HDF5 ({e})") from e
