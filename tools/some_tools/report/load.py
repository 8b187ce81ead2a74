"""Inputs of the report beyond metrics.jsonl and the analytics files: the run's resolved config,
which router it used, and the MoE gate W_g from a checkpoint (or RUN/model.h5).

Legend: E experts, d model width.
"""
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from some_tools import metrics
from some_tools.analytics_files import LayerData
from some_tools.errors import InputError


def load_metrics(run: Path) -> tuple[metrics.Metrics, list[str]]:
    """RUN/metrics.jsonl, which must hold a training or eval line, and a note on the lines skipped."""
    m = metrics.read(run / "metrics.jsonl")
    notes = []
    if m.skipped:
        notes.append(f"{m.path.name}: skipped {len(m.skipped)} unparsable line(s) (line "
                     f"{', '.join(map(str, m.skipped[:5]))}{', ...' if len(m.skipped) > 5 else ''}).")
    if not m.train and not m.evals:
        raise InputError(f"{m.path}: no training or eval lines")
    return m, notes


def load_config(run: Path) -> tuple[dict, str]:
    """The run's resolved config and where it came from ({} and a note when there is none)."""
    path = run / "config.toml"
    text, source = None, None
    if path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path.name)
    else:
        latest = run / "checkpoints" / "latest"
        if latest.is_file():
            manifest = run / "checkpoints" / latest.read_text().strip() / "manifest.json"
            if manifest.is_file():
                text = json.loads(manifest.read_text()).get("config")
                source = str(manifest.relative_to(run))
    if not text:
        return {}, "no config.toml or checkpoint manifest"
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as e:
        return {}, f"{source} does not parse ({e})"


@dataclass
class Router:
    kind: str    # "some" | "moe" | "hash" | "dense" | "unknown"
    short: str   # for the title, e.g. "MoE, balance aux_loss"
    line: str    # one Markdown sentence for the header


MOE_BALANCE = {"aux_loss": "Switch auxiliary load-balancing loss E·Σ f_i P_i, weight {aux_loss}",
               "bias": "selection bias b_i += {bias_rate}·sign(mean load − load_i) after every step "
                       "(steers the top-k choice only, not the gate values)",
               "none": "no load balancing"}


def router_of(cfg: dict, layers: list[LayerData]) -> Router:
    """Which router the run used, from RUN/config.toml (model.ffn, moe.balance); the analytics file
    tells SoME apart when there is no config."""
    m, moe, r = cfg.get("model", {}), cfg.get("moe", {}), cfg.get("router", {})
    ffn = m.get("ffn")
    if ffn is None:
        if layers and all(d.keys is not None for d in layers):
            ffn = "some"
        else:
            what = "routed layers without keys" if layers else "no routing analytics"
            return Router("unknown", "router unknown", f"unknown (no `model.ffn` in the config; {what})")
    k, e = m.get("top_k", "?"), m.get("num_experts", "?")
    if ffn == "some":
        return Router("some", "SoME",
                      f"**SoME**: a learned query scored against per-expert routing keys (score "
                      f"`{r.get('score', '?')}`, temperature {r.get('temperature', '?')}), top-{k} of E = {e}; "
                      + ("the keys are frozen (`router.freeze_keys`)" if r.get("freeze_keys")
                         else "the keys are moved by Knowledge Gravity, not by gradients"))
    if ffn == "moe":
        balance = moe.get("balance", "?")
        how = MOE_BALANCE.get(balance, "`{balance}`").format(aux_loss=moe.get("aux_loss", "?"),
                                                             bias_rate=moe.get("bias_rate", "?"), balance=balance)
        return Router("moe", f"MoE, balance {balance}",
                      f"**MoE** baseline: learned gate W_g, softmax over E = {e} experts, top-{k}; "
                      f"`moe.balance = {balance}`: {how}")
    if ffn == "hash":
        return Router("hash", "hash routing",
                      f"**hash** baseline: each token id goes to {k} fixed experts of E = {e} (a seeded hash of "
                      f"the id, equal gates); nothing in the router is learned")
    if ffn == "dense":
        return Router("dense", "dense FFN", f"**dense** FFN (d_ff = {m.get('d_ff', '?')}): no routing")
    return Router("unknown", f"model.ffn = {ffn}", f"`model.ffn = {ffn}` (not a router this report knows)")


@dataclass
class Gate:
    weights: dict[int, np.ndarray]   # layer -> W_g (E, d)
    bias: dict[int, np.ndarray]      # layer -> selection bias b (E,)
    source: str                      # e.g. "checkpoint step 20"
    step: int | None


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, directory) of RUN/checkpoints/step_* with a manifest, the one `latest` names first,
    then by descending step."""
    d = run / "checkpoints"
    if not d.is_dir():
        return []
    found = {}
    for p in d.iterdir():
        m = re.match(r"^step_(\d+)$", p.name)
        if m and (p / "manifest.json").is_file():
            found[int(m.group(1))] = p
    latest = d / "latest"
    first = latest.read_text().strip() if latest.is_file() else None
    return sorted(found.items(), key=lambda t: (t[1].name != first, -t[0]))


def load_moe_gate(run: Path, step: int, layer_ids: list[int]) -> tuple[Gate | None, list[str]]:
    """The gate W_g (`layers.L.moe.gate.weight`) and bias (`layers.L.moe.bias`) of every layer:
    from the checkpoint of the analytics step if there is one, else the latest checkpoint, else
    RUN/model.h5 (`some checkpoint convert`). (None, notes) when none of them holds them."""
    import h5py
    names = {lid: (f"layers.{lid}.moe.gate.weight", f"layers.{lid}.moe.bias") for lid in layer_ids}
    cands = _checkpoints(run)
    cands.sort(key=lambda t: t[0] != step)  # the analytics step's own checkpoint first (stable sort)
    notes = []
    for st, d in cands:
        try:
            tensors = json.loads((d / "manifest.json").read_text()).get("tensors", {})
            w, b = {}, {}
            for lid, (wn, bn) in names.items():
                for name, into in ((wn, w), (bn, b)):
                    rec = tensors.get(name)
                    if rec is None:
                        continue
                    with h5py.File(d / rec["file"], "r") as f:
                        into[lid] = np.asarray(f[name][()], dtype=np.float64)
            if w:
                return Gate(w, b, f"checkpoint step {st}", st), notes
            notes.append(f"{d.relative_to(run)}: no `layers.L.moe.gate.weight` tensors.")
        except (OSError, KeyError, ValueError) as e:
            notes.append(f"{d.relative_to(run)}: cannot read the MoE gate ({e}).")
    model = run / "model.h5"
    if model.is_file():
        try:
            with h5py.File(model, "r") as f:
                w = {lid: np.asarray(f[wn][()], dtype=np.float64) for lid, (wn, _) in names.items() if wn in f}
                b = {lid: np.asarray(f[bn][()], dtype=np.float64) for lid, (_, bn) in names.items() if bn in f}
            if w:
                return Gate(w, b, "model.h5", None), notes
        except OSError as e:
            notes.append(f"model.h5: cannot read the MoE gate ({e}).")
    notes.append("No checkpoint or model.h5 holds the MoE gate: its experts are placed by co-activation "
                 "instead of by their gate vectors.")
    return None, notes
