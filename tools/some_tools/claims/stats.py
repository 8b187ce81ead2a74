"""Pure computations of the claims report (some_tools.claims): co-activation structure, forgetting
ratios, parsing of `some` outputs, and the verdict sentences. numpy only; the per-layer routing
metrics themselves (Gini, normalised co-activation, key clustering) come from some_tools.analytics.

Legend: E experts, k top-k. `coact` (E, E) co-activation counts C_ij = #tokens that selected both
i and j (i != j, zero diagonal), `counts` (E,) selections n_i, `keys` (E, d).
"""
from __future__ import annotations

import math
import re

import numpy as np

from some_tools import analytics

TOP_PAIR_FRACTION = 0.10   # "top pairs" = the strongest 10% of the E (E - 1) / 2 expert pairs
EQUAL_WITHIN = 0.02        # relative differences below 2% are called "about equal"


# ---------------------------------------------------------------------------------------------
# Co-activation structure (claim B)
# ---------------------------------------------------------------------------------------------

def live_experts(counts) -> np.ndarray:
    """Indices of the experts the eval set selected at least once (n_i > 0)."""
    return np.flatnonzero(np.asarray(counts).ravel() > 0)


def pair_counts(coact, counts=None) -> np.ndarray:
    """C_ij over the unordered pairs i < j (C symmetrised first), of all experts or, given the
    selection counts, of the live ones only (dead experts would add pairs that can never fire
    and so inflate every concentration measure). (L (L - 1) / 2,) float64."""
    c = np.asarray(coact, dtype=np.float64)
    c = (c + c.T) / 2
    if counts is not None:
        live = live_experts(counts)
        c = c[np.ix_(live, live)]
    i, j = np.triu_indices(c.shape[0], k=1)
    return c[i, j]


def top_pair_mass(coact, counts=None, fraction: float = TOP_PAIR_FRACTION) -> float | None:
    """Share of all co-activations that fall on the strongest ceil(fraction * #pairs) pairs (of
    the live experts when `counts` is given).

    uniform_top_pair_mass(L) when every pair co-fires equally often, 1 when only those pairs ever
    do; None when there is no co-activation at all (k = 1, or fewer than 2 experts).
    """
    w = pair_counts(coact, counts)
    total = w.sum()
    if w.size == 0 or total <= 0:
        return None
    m = max(1, math.ceil(fraction * w.size))
    return float(np.sort(w)[::-1][:m].sum() / total)


def uniform_top_pair_mass(e: int, fraction: float = TOP_PAIR_FRACTION) -> float:
    """top_pair_mass when all E (E - 1) / 2 pairs co-fire equally often: ceil(fraction * P) / P."""
    pairs = e * (e - 1) // 2
    return max(1, math.ceil(fraction * pairs)) / pairs if pairs > 0 else 0.0


def pair_gini(coact, counts=None) -> float | None:
    """Gini coefficient of the pair counts C_ij (i < j; live experts only when `counts` is given):
    0 when all pairs co-fire equally, towards 1 when a few pairs take all co-activations. None
    without co-activations."""
    w = pair_counts(coact, counts)
    if w.size == 0 or w.sum() <= 0:
        return None
    return analytics.gini(w)


def best_partner_affinity(coact, counts) -> float | None:
    """Mean over live experts (n_i > 0) of max_j A_ij, A = C_ij / sqrt(n_i n_j) the normalised
    co-activation (some_tools.analytics): 1 when every expert always fires with one fixed partner
    that fires only with it; about (k - 1) / (L - 1) for uniformly random top-k sets of the L live
    experts (uniform_affinity). None without co-activations."""
    c = np.asarray(coact, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64).ravel()
    live = live_experts(n)
    if live.size < 2 or c.sum() <= 0:
        return None
    a = analytics.normalized_coactivation(c, n)
    return float(a[live].max(axis=1).mean())


def uniform_affinity(k: int, e: int) -> float:
    """A_ij of every pair under uniformly random top-k sets of E experts: (k - 1) / (E - 1)."""
    return (k - 1) / (e - 1) if e > 1 else 0.0


def mean_or_none(values) -> float | None:
    """Mean of the values that are not None; None when none is left."""
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def column_means(rows: list[list[float]]) -> list[float]:
    """Element-wise mean of equally long rows: [[1, 2], [3, 6]] -> [2.0, 4.0]."""
    return [float(x) for x in np.mean(np.asarray(rows, dtype=np.float64), axis=0)]


# ---------------------------------------------------------------------------------------------
# Parameters, forgetting
# ---------------------------------------------------------------------------------------------

PARAM_LINE = re.compile(r"model: (\d+) parameters \((\d+) trainable\)")


def parse_param_line(text: str) -> tuple[int, int] | None:
    """(total, trainable) from the trainer's "model: N parameters (M trainable)" log line."""
    m = PARAM_LINE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def trainable_fraction(total: int, trainable: int) -> float:
    return trainable / total if total > 0 else 0.0


def forgetting_ratio(ppl_before: float, ppl_after: float) -> float:
    """PPL on domain A after training on domain B over PPL on A before: 1 = nothing forgotten."""
    if ppl_before <= 0:
        raise ValueError(f"PPL before must be positive, got {ppl_before}")
    return ppl_after / ppl_before


EVAL_LINE = re.compile(r"val loss ([0-9.eE+-]+|nan|inf) \| val PPL ([0-9.eE+-]+|nan|inf) \| "
                       r"unigram PPL ([0-9.eE+-]+|nan|inf) \| (\d+) tokens")


def parse_eval_output(text: str) -> dict:
    """The numbers of `some eval`'s stdout: "val loss L | val PPL P | unigram PPL U | N tokens",
    then one JSON routing line per routed layer. Raises ValueError when the summary line is missing."""
    import json
    m = None
    for m in EVAL_LINE.finditer(text):  # noqa: B007 - the last summary line wins (there is one)
        pass
    if m is None:
        raise ValueError("no 'val loss ... | val PPL ... | unigram PPL ... | N tokens' line")
    routing = []
    for line in text[m.end():].splitlines():
        line = line.strip()
        if line.startswith("{"):
            routing.append(json.loads(line))
    return {"val_loss": float(m.group(1)), "val_ppl": float(m.group(2)), "unigram_ppl": float(m.group(3)),
            "tokens": int(m.group(4)), "routing": routing}


# ---------------------------------------------------------------------------------------------
# Seeds, gaps (the gap and recycling parts)
# ---------------------------------------------------------------------------------------------

GAP_WITHIN = 0.10          # "within 10% of dense": val PPL at most 10% above the dense FFN's
EQUAL_PARAMS_WITHIN = 0.01  # trainable parameter counts within 1% count as equal


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1, as `some sweep`'s summary) of the values; the
    deviation is None for a single value. ValueError for none."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def fmt_mean_std(mean: float, std: float | None, spec: str = ".2f") -> str:
    """"151.20 ± 3.41" (or just the mean when there is one seed)."""
    return format(mean, spec) if std is None else f"{format(mean, spec)} ± {format(std, spec)}"


def fmt_pct(rel: float) -> str:
    """A relative change as a signed percentage with one decimal: 0.263 -> "+26.3%"."""
    return f"{100 * rel:+.1f}%"


def beyond_spread(mean: float, std: float | None, ref_mean: float, ref_std: float | None) -> bool:
    """Whether two seed means differ by more than the sum of their seeds' standard deviations (a
    deliberately rough test for two seeds: a difference inside the seed-to-seed spread is not
    counted as an effect)."""
    return abs(mean - ref_mean) > (std or 0.0) + (ref_std or 0.0)


def within_gap(ppl: float, dense_ppl: float, within: float = GAP_WITHIN) -> bool:
    """Whether a val PPL is at most `within` (10%) above the dense FFN's (better counts too):
    ppl <= dense_ppl * (1 + within)."""
    return ppl <= dense_ppl * (1.0 + within)


def equal_params(a: int, b: int, within: float = EQUAL_PARAMS_WITHIN) -> bool:
    """Whether two parameter counts differ by at most `within` of the larger one."""
    return abs(a - b) <= within * max(a, b)


def gap_closed(ppl: float, floor_ppl: float, ceiling_ppl: float) -> float | None:
    """Share of the way from `floor_ppl` (e.g. SoME over a random library) to `ceiling_ppl` (e.g.
    the wide dense model) that `ppl` covers: (floor - ppl) / (floor - ceiling); 1 = as good as the
    ceiling, 0 = no better than the floor, negative = worse. None when the ceiling is not better
    than the floor (nothing to close)."""
    if floor_ppl <= ceiling_ppl:
        return None
    return (floor_ppl - ppl) / (floor_ppl - ceiling_ppl)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# ---------------------------------------------------------------------------------------------
# Verdict wording
# ---------------------------------------------------------------------------------------------

def relative_change(value: float, reference: float) -> float:
    """value / reference - 1 (e.g. +0.26 = 26% above the reference)."""
    return value / reference - 1.0


def compare_ppl(ppl: float, ref_ppl: float, within: float = EQUAL_WITHIN) -> str:
    """How a perplexity compares with a reference one (lower is better): "26% worse",
    "12% better", or "about equal (within 2%)"."""
    r = relative_change(ppl, ref_ppl)
    if abs(r) < within:
        return f"about equal (within {within:.0%})"
    return f"{abs(r):.0%} {'worse' if r > 0 else 'better'}"


def compare_ppl_to(ppl: float, ref_ppl: float, ref_name: str, within: float = EQUAL_WITHIN) -> str:
    """"26% worse than dense", "12% better than dense", "about equal to dense (within 2%)"."""
    r = relative_change(ppl, ref_ppl)
    if abs(r) < within:
        return f"about equal to {ref_name} (within {within:.0%})"
    return f"{abs(r):.0%} {'worse' if r > 0 else 'better'} than {ref_name}"


def fmt_ppl(x: float | None) -> str:
    """A perplexity as the tables print it: 2 decimals (the precision `some eval` prints)."""
    return "n/a" if x is None else f"{x:.2f}"


def ppl_verdict(name: str, ppl: float, ref_name: str, ref_ppl: float, what: str) -> str:
    """"SoME val PPL 151.00 vs dense 120.00: SoME is 26% worse <what>"."""
    return (f"{name} val PPL {fmt_ppl(ppl)} vs {ref_name} {fmt_ppl(ref_ppl)}: "
            f"{name} is {compare_ppl(ppl, ref_ppl)} {what}".rstrip())


def unigram_verdict(name: str, ppl: float, unigram_ppl: float) -> str:
    """Whether a model learned more than the token frequencies of the val set."""
    if ppl < unigram_ppl:
        return (f"{name} val PPL {fmt_ppl(ppl)} is below the unigram PPL {fmt_ppl(unigram_ppl)} of the same tokens "
                f"({unigram_ppl / ppl:.2f}x lower): it learned more than token frequencies")
    return (f"{name} val PPL {fmt_ppl(ppl)} is not below the unigram PPL {fmt_ppl(unigram_ppl)} of the same tokens: "
            f"it has not yet learned more than token frequencies")


def option_verdict(name: str, mean: float, std: float | None, ref_name: str, ref_mean: float,
                   ref_std: float | None) -> str:
    """"learn-scale val PPL 140.00 ± 2.00 vs SoME 150.00 ± 1.00: 7% better, beyond the seeds'
    spread" (or "within the seeds' spread")."""
    spread = "beyond" if beyond_spread(mean, std, ref_mean, ref_std) else "within"
    return (f"{name} val PPL {fmt_mean_std(mean, std)} vs {ref_name} {fmt_mean_std(ref_mean, ref_std)}: "
            f"{compare_ppl(mean, ref_mean)}, {spread} the seeds' spread")


def best_of(ppls: dict[str, float]) -> str:
    """The name with the lowest PPL (ties: the first in order)."""
    return min(ppls, key=lambda n: ppls[n])


def ratio_change(ratio: float, within: float = EQUAL_WITHIN) -> str:
    """A ratio against 1 in words: "35% higher", "12% lower", "about unchanged, within 2%"."""
    r = ratio - 1.0
    if abs(r) < within:
        return f"about unchanged, within {within:.0%}"
    return f"{abs(r):.0%} {'higher' if r > 0 else 'lower'}"


def forgetting_phrase(ratio: float, within: float = EQUAL_WITHIN, brackets: bool = True) -> str:
    """"domain-A PPL x1.350 (35% higher)" (or "domain-A PPL x1.350, 35% higher")."""
    change = ratio_change(ratio, within)
    return f"domain-A PPL x{ratio:.3f} ({change})" if brackets else f"domain-A PPL x{ratio:.3f}, {change}"


def forgetting_verdict(ratios: dict[str, float], subject: str = "SoME", within: float = EQUAL_WITHIN) -> str:
    """How the subject's forgetting ratio (PPL_A after / PPL_A before) ranks among the models'.

    {"SoME": 1.10, "dense": 1.40, "MoE": 1.30} -> "SoME forgets least: domain-A PPL x1.100 (10% higher)
    after training on domain B, vs dense x1.400 (40% higher), MoE x1.300 (30% higher)"."""
    if subject not in ratios:
        raise ValueError(f"no forgetting ratio for {subject}")
    mine = ratios[subject]
    others = {n: r for n, r in ratios.items() if n != subject}
    body = f"{forgetting_phrase(mine, within)} after training on domain B"
    if not others:
        return f"{subject}: {body}"
    less = [n for n, r in others.items() if r > mine]
    more = [n for n, r in others.items() if r <= mine]
    if not more:
        rank = "forgets least"
    elif not less:
        rank = "forgets most"
    else:
        rank = f"forgets less than {', '.join(less)} but not less than {', '.join(more)}"
    versus = ", ".join(f"{n} x{r:.3f} ({ratio_change(r, within)})" for n, r in others.items())
    return f"{subject} {rank}: {body}, vs {versus}"


def forgetting_conclusion(ratio: float, subject: str = "SoME", within: float = EQUAL_WITHIN) -> str:
    """Whether freezing the experts kept domain A: "freezing the experts does not prevent forgetting:
    SoME's domain-A PPL rose by 10%" or "with its experts frozen, SoME keeps domain A (...)"."""
    if ratio - 1.0 < within:
        return f"with its experts frozen, {subject} keeps domain A ({forgetting_phrase(ratio, within, brackets=False)})"
    return (f"freezing the experts does not prevent forgetting: {subject}'s domain-A PPL rose by "
            f"{ratio - 1.0:.0%} (x{ratio:.3f})")
