"""The one reader of a run's routing-analytics files RUN/analytics/step_XXXXXXXX.h5 (docs/design.md §9),
shared by every tool: one file per eval, one group /layers/L per routed layer with `counts` and
`coactivation` (every router) and `keys`, `usage` (SoME only). Above 4096 experts the trainer stores
the co-activation as its strongest pairs, `coactivation_pairs` (M, 3) rows (i, j, count), i < j; this
reader rebuilds the symmetric matrix from them up to MAX_DENSE_EXPERTS and refuses larger pools.

Legend: E experts, d model width.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from some_tools.errors import InputError

FILE_RE = re.compile(r"^step_(\d{8})\.h5$")
MAX_DENSE_EXPERTS = 8192  # a rebuilt (E, E) float64 matrix: 512 MiB


def dense_coactivation(path: Path, layer: str, pairs: np.ndarray, num_experts: int) -> np.ndarray:
    """The symmetric (E, E) co-activation from its strongest pairs (absent pairs count 0)."""
    if num_experts > MAX_DENSE_EXPERTS:
        raise InputError(f"{path}: /layers/{layer} has {num_experts} experts; the tools read co-activation "
                         f"as an (E, E) matrix up to {MAX_DENSE_EXPERTS} experts")
    c = np.zeros((num_experts, num_experts))
    if len(pairs):
        i, j, n = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        c[i, j] = n
        c[j, i] = n
    return c


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
                missing = [k for k in ("counts",) if k not in g]
                if "coactivation" not in g and "coactivation_pairs" not in g:
                    missing.append("coactivation (or coactivation_pairs)")
                if missing:
                    raise InputError(f"{path}: /layers/{name} lacks {', '.join(missing)}")
                opt = {k: (g[k][()] if k in g else None) for k in ("keys", "usage")}
                counts = g["counts"][()]
                coact = (g["coactivation"][()] if "coactivation" in g
                         else dense_coactivation(path, name, g["coactivation_pairs"][()], len(counts)))
                out.append(LayerData(int(name), opt["keys"], opt["usage"], counts, coact))
            return out
    except OSError as e:
        raise InputError(f"{path}: cannot read as HDF5 ({e})") from e
