"""The runs of `some experiment claims` (some_tools.claims) at each scale: which models, with which
settings, on which data, for how many steps, and in what order they run. Three parts, each its
own plan and report (docs/claims.md): `claims` (the seeds' claims A, B, C), `gap` (which router
and expert options close the gap to the dense FFN) and `recycling` (a trained dense FFN sliced
into the expert library); `all` is the three merged.

Fairness (docs/design.md §10): within a comparison every run has the same d_model, layers, heads, data,
seq_len, batch, steps and so tokens; active FFN parameters per token are equal (k * h for SoME and
MoE = d_ff of the dense baseline; k * h + H with a shared expert of width H). Runs are shared
where the configuration is the same: the default SoME run is claim A's SoME, claim B's k = 2 and
claim C's SoME before domain B; claim A's dense run (and its continuation on domain B) is also
the recycling part's dense baseline.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

PARTS = ("claims", "gap", "recycling")
SEED = 1234   # the trainer's default model.seed and train.seed: seed index i trains with SEED + i


@dataclass(frozen=True)
class Scale:
    name: str
    base_config: str          # relative to the source tree
    d_model: int
    n_layers: int
    num_experts: int          # E of the reference SoME (k = top_k)
    top_k: int
    d_expert: int             # h of the reference SoME
    steps_a: int              # optimizer steps on domain A (every run)
    steps_b: int              # further steps on domain B (claim C)
    common: dict              # --set overrides of every run (beyond the model shape)
    python_bytes: int         # size of the domain-B corpus (Python standard library source)
    python_val_fraction: float
    budget: str               # the time the claims part is meant to take, as documented
    gap_steps: int            # optimizer steps of every run of the gap part
    gap_seeds: int            # seeds of every configuration of the gap part ...
    gap_seeds_headline: int   # ... and of the reference SoME, the selection bias and the dense FFN
    recycle_experts: int      # E_r: the recycling part's library has E_r experts of width h
    part_budgets: dict        # the time the gap and recycling parts are meant to take, as documented


def _common(eval_every: int, eval_batches: int, checkpoint_every: int, log_every: int, threads: int,
            **extra) -> dict:
    return {
        "train.max_minutes": "0",              # equal tokens: never stop on the clock
        "train.eval_every": str(eval_every),
        "train.eval_batches": str(eval_batches),
        "train.log_every": str(log_every),
        "train.checkpoint_every": str(checkpoint_every),
        "train.keep_last": "2",
        "train.checkpoint_experts": "once",    # the frozen library written once per run
        "train.sample_tokens": "0",
        "train.threads": str(threads),
        **{k.replace("__", "."): str(v) for k, v in extra.items()},
    }


SCALES = {
    # The CTest's scale: configs/tiny.toml (d 32, 2 layers, 8 experts of width 16, top-2).
    "tiny": Scale("tiny", "configs/tiny.toml", d_model=32, n_layers=2, num_experts=8, top_k=2, d_expert=16,
                  steps_a=60, steps_b=30,
                  common=_common(eval_every=15, eval_batches=4, checkpoint_every=15, log_every=5, threads=1,
                                 optim__warmup_steps=10),
                  python_bytes=120_000, python_val_fraction=0.1, budget="about 2-3 minutes",
                  gap_steps=60, gap_seeds=2, gap_seeds_headline=2, recycle_experts=8,
                  part_budgets={"gap": "about 15-20 seconds", "recycling": "about 10 seconds"}),
    # configs/default.toml's model (d 192, 4 layers, 32 experts of width 192, top-2, seq 128,
    # 32 sequences per step) for fewer steps: nine runs and twelve evals in under an hour on 2 cores.
    # One intra-op thread: measured on this shared 2-core machine, a 2-thread trainer fell to
    # ~114 tokens/s whenever another process held a core (its OpenMP threads wait on each other),
    # while one thread kept ~2.7k tokens/s (1.5 s per step); unloaded, 2 threads give ~4.9k.
    # The gap part: 10 configurations, 3 seeds for the reference SoME, the selection bias and the
    # dense FFN and 2 for the rest = 23 runs of 500 steps (every row below the unigram PPL: at 100
    # steps none of the SoME rows were), ~1.6 s per step at 1 thread (the recycling part's measured
    # 322-342 s per 200 steps of SoME and dense, 2026-12-08): ~5 hours, plus a full eval and one
    # per-layer FFN ablation per run; finished runs are skipped, so it resumes across sessions.
    # The recycling part: 22 runs (2 parents of ~1.6x a dense step, 16 students and controls of 200
    # steps, 2 of 400, 2 of ~520, the parent continued, 4 continuations on domain B) and 16 evals:
    # measured 2h25m.
    "small": Scale("small", "configs/default.toml", d_model=192, n_layers=4, num_experts=32, top_k=2, d_expert=192,
                   steps_a=200, steps_b=100,
                   common=_common(eval_every=50, eval_batches=20, checkpoint_every=50, log_every=10, threads=1),
                   python_bytes=1_500_000, python_val_fraction=0.05, budget="under one hour on 2 cores",
                   gap_steps=500, gap_seeds=2, gap_seeds_headline=3, recycle_experts=8,
                   part_budgets={"gap": "about 5 hours on 2 cores (estimated)",
                                 "recycling": "about 2.5 hours on 2 cores (measured: 2h25m)"}),
}


@dataclass(frozen=True)
class Run:
    name: str                 # directory under OUT
    label: str                # name in tables and plots
    ffn: str                  # some | dense | moe
    sets: dict                # --set overrides beyond Scale.common
    domain: str = "A"         # A (the default corpus) or B (Python source)
    continue_from: str | None = None   # run whose final checkpoint this one continues (claim C)
    claims: tuple = ()
    top_k: int = 0
    num_experts: int = 0
    d_expert: int = 0
    d_ff: int = 0
    steps_a: int = 0          # steps on domain A (set by make_plan)
    steps_b: int = 0          # further steps on domain B of a continued run (set by make_plan)
    shared_expert: int = 0    # H: width of the trainable shared expert every token also uses
    experts_from: str | None = None   # run whose trained dense FFN becomes this SoME's experts
    group: str = ""           # gap / recycling part: the row (GapConfig / RecycleRow key) this run is a seed of
    seed: int = 0             # gap / recycling part: the seed index (model.seed = train.seed = SEED + seed)
    # model.init_from: the run whose final checkpoint starts this one (docs/design.md §2)
    init_from: str | None = None
    init_parts: str = "all"   # all | backbone | ffn
    init_units: str = "first"  # first | magnitude | cluster
    init_optimizer: bool = False
    # Equal training FLOPs: train.max_steps is set when the run starts, so that its FLOPs equal the
    # sum over these (finished) runs of their training FLOPs, each with what it inherited.
    flops_of: tuple = ()

    @property
    def inherits_from(self) -> str | None:
        """The run whose training this one inherits (its library, its weights or its checkpoint)."""
        return self.experts_from or self.init_from or self.continue_from

    @property
    def active_ffn(self) -> int:
        """Hidden units a token passes through per FFN: k * h (+ H of a shared expert) for SoME and
        MoE, d_ff for dense."""
        return self.d_ff if self.ffn == "dense" else self.top_k * self.d_expert + self.shared_expert


@dataclass(frozen=True)
class Eval:
    name: str                 # OUT/evals/<name>.txt
    run: str                  # run directory name
    domain: str               # A or B
    when: str                 # "before" (after domain A only), "after" (after domain B), or "ablation"
    model: str                # the model's label in claim C
    ablate: int = -1          # "ablation" evals: the block whose FFN output is left out (-1: none, the full model)


@dataclass(frozen=True)
class GapConfig:
    """One row of the gap part: a model configuration trained with every seed."""
    key: str                  # runs are gap-<key>-s<seed>
    label: str
    ffn: str                  # some | dense
    options: dict             # the --set overrides that define it (beyond the model shape)
    what: str                 # one line: what the row is
    headline: bool = False    # trained with Scale.gap_seeds_headline seeds (the rows the verdict rests on)
    shared_expert: int = 0    # H
    d_ff: int = 0             # dense
    equal_active: str = ""    # key of the dense configuration with the same active FFN units per token


@dataclass
class Plan:
    scale: Scale
    part: str = "claims"
    runs: list[Run] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)
    gap: list[GapConfig] = field(default_factory=list)   # the gap part's rows, in table order
    recycle: list = field(default_factory=list)          # the recycling part's rows (RecycleRow), in table order

    def run(self, name: str) -> Run:
        return next(r for r in self.runs if r.name == name)

    def max_steps(self, run: Run) -> int:
        """train.max_steps of a run: phase B continues the step count of its phase-A run."""
        return run.steps_a + (run.steps_b if run.continue_from else 0)

    def gap_runs(self, key: str) -> list[Run]:
        """The runs (one per seed) of a gap configuration or a recycling row."""
        return [r for r in self.runs if r.group == key]


def _some(name, label, s: Scale, k: int, e: int, h: int, claims, extra=None) -> Run:
    sets = {"model.ffn": "some", "model.top_k": str(k), "model.num_experts": str(e), "model.d_expert": str(h)}
    sets.update(extra or {})
    return Run(name, label, "some", sets, claims=claims, top_k=k, num_experts=e, d_expert=h)


def make_plan(scale_name: str) -> Plan:
    s = SCALES[scale_name]
    k, e, h = s.top_k, s.num_experts, s.d_expert
    shape = {"model.d_model": str(s.d_model), "model.n_layers": str(s.n_layers)}
    plan = Plan(s, "claims")
    some = _some("some-k2", "SoME", s, k, e, h, ("A", "B", "C"))
    dense = _dense(s, ("A", "C"))
    moe = Run("moe", "MoE", "moe",
              {"model.ffn": "moe", "model.top_k": str(k), "model.num_experts": str(e), "model.d_expert": str(h),
               "moe.balance": "aux_loss", "moe.aux_loss": "0.01"},
              claims=("A", "C"), top_k=k, num_experts=e, d_expert=h)
    frozen = _some("some-frozen-keys", "SoME, frozen keys", s, k, e, h, ("A",), {"router.freeze_keys": "true"})
    # Claim B: k * h and E * h fixed (equal active and equal total expert parameters): E = e k / 2.
    k1 = _some("some-k1", "SoME k=1", s, 1, e // 2, 2 * h, ("B",))
    k4 = _some("some-k4", "SoME k=4", s, 4, 2 * e, h // 2, ("B",))
    phase_a = [some, dense, moe, frozen, k1, k4]
    for r in phase_a:
        plan.runs.append(_phase_a(r, s, shape))
    _add_forgetting(plan, (some, dense, moe), ("C",))
    return plan


def _dense(s: Scale, claims) -> Run:
    """The dense baseline at equal active compute (d_ff = k * h): claim A's and the recycling part's."""
    k, h = s.top_k, s.d_expert
    return Run("dense", "dense", "dense", {"model.ffn": "dense", "model.d_ff": str(k * h)}, claims=claims, d_ff=k * h)


def _phase_a(r: Run, s: Scale, shape: dict, steps: int | None = None) -> Run:
    """A domain-A run with the model shape of the scale and its step count."""
    return dataclasses.replace(r, sets={**shape, **r.sets}, steps_a=steps or s.steps_a)


def _add_forgetting(plan: Plan, bases: tuple[Run, ...], claims) -> None:
    """Claim C's mechanism for `bases` (phase-A runs): each continued on domain B, and the four
    evals (domain A and B, before and after)."""
    s = plan.scale
    for base in bases:
        plan.runs.append(Run(f"{base.name}-then-python", f"{base.label} then Python", base.ffn, {}, "B", base.name,
                             claims, base.top_k, base.num_experts, base.d_expert, base.d_ff,
                             steps_a=plan.run(base.name).steps_a,
                             steps_b=s.steps_b, shared_expert=base.shared_expert))
    for base in bases:
        for domain in ("A", "B"):
            plan.evals.append(Eval(f"{base.name}.before.{domain}", base.name, domain, "before", base.label))
            plan.evals.append(Eval(f"{base.name}-then-python.after.{domain}", f"{base.name}-then-python", domain,
                                   "after", base.label))


# ---------------------------------------------------------------------------------------------
# The gap part: which options close the gap to the dense FFN
# ---------------------------------------------------------------------------------------------

def equal_trainable_d_ff(d_model: int) -> int:
    """d_ff of the dense FFN with (at most) the trainable parameters of a SoME layer: the SoME
    layer trains only its query network (router.query = linear: d x d weights + d biases; keys
    and experts are buffers), a dense FFN trains 2 d d_ff weights (no biases); everything else
    (embeddings, attention, norms) is the same in both. floor((d^2 + d) / (2 d))."""
    return (d_model * d_model + d_model) // (2 * d_model)


def gap_configs(s: Scale) -> list[GapConfig]:
    """The gap part's rows: the reference SoME, each option alone, all options together, and the
    dense FFN at equal active compute (without and with the shared expert's width) and at equal
    trainable parameters."""
    k, e, h = s.top_k, s.num_experts, s.d_expert
    shared = h  # H: the shared expert is as wide as one routed expert
    some = {"model.ffn": "some", "model.top_k": str(k), "model.num_experts": str(e), "model.d_expert": str(h)}
    options = {
        "learn-scale": ({"router.gate_scale": "learnable"}, "learned gate scale (initial 1/temperature)"),
        "bias": ({"router.balance": "bias"}, "loss-free selection bias (router.bias_rate default)"),
        "kmeans": ({"router.key_init": "data"}, "keys = k-means++ centres of the first step's queries"),
        "output-scale": ({"expert.output_scale": "learnable"}, "trainable output scale per expert"),
        "shared": ({"model.shared_expert": str(shared)}, f"trainable shared dense expert of width H = h = {shared}"),
    }
    rows = [GapConfig("some", "SoME (reference)", "some", dict(some), "the scale's reference SoME, no option",
                      headline=True, equal_active="dense")]
    for key, (sets, what) in options.items():
        rows.append(GapConfig(key, f"SoME + {key}", "some", {**some, **sets}, what, headline=key == "bias",
                              shared_expert=shared if key == "shared" else 0,
                              equal_active="dense-shared" if key == "shared" else "dense"))
    every = {kv: v for sets, _ in options.values() for kv, v in sets.items()}
    rows.append(GapConfig("all", "SoME + all options", "some", {**some, **every},
                          "all five options together",
                          shared_expert=shared, equal_active="dense-shared"))
    d_eq = equal_trainable_d_ff(s.d_model)
    for key, d_ff, what in (("dense", k * h, f"dense FFN at equal active compute, d_ff = k·h = {k * h}"),
                            ("dense-shared", k * h + shared,
                             f"dense FFN at equal active compute with the shared expert, d_ff = k·h + H = "
                             f"{k * h + shared}"),
                            ("dense-params", d_eq,
                             f"dense FFN at equal trainable parameters, d_ff = floor((d² + d) / 2d) = {d_eq}")):
        rows.append(GapConfig(key, f"dense d_ff={d_ff}", "dense", {"model.ffn": "dense", "model.d_ff": str(d_ff)},
                              what, headline=key == "dense", d_ff=d_ff))
    return rows


def make_gap_plan(scale_name: str) -> Plan:
    s = SCALES[scale_name]
    shape = {"model.d_model": str(s.d_model), "model.n_layers": str(s.n_layers)}
    plan = Plan(s, "gap", gap=gap_configs(s))
    for c in plan.gap:
        for i in range(s.gap_seeds_headline if c.headline else s.gap_seeds):
            seeds = {"model.seed": str(SEED + i), "train.seed": str(SEED + i)}
            run = Run(f"gap-{c.key}-s{i}", c.label, c.ffn, {**c.options, **seeds}, claims=("gap",),
                      top_k=s.top_k if c.ffn == "some" else 0, num_experts=s.num_experts if c.ffn == "some" else 0,
                      d_expert=s.d_expert if c.ffn == "some" else 0, d_ff=c.d_ff, shared_expert=c.shared_expert,
                      group=c.key, seed=i)
            plan.runs.append(_phase_a(run, s, shape, steps=s.gap_steps))
            # What each block's FFN contributes: the whole val split with every FFN, then with each
            # block's FFN output left out in turn.
            for layer in range(-1, s.n_layers):
                what = "full" if layer < 0 else f"ablate.{layer}"
                plan.evals.append(Eval(f"{run.name}.{what}", run.name, "A", "ablation", c.label, ablate=layer))
    return plan


# ---------------------------------------------------------------------------------------------
# The recycling part: a trained dense FFN as the expert library
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecycleRow:
    """One row of the recycling part: a model trained with `seeds` seeds (runs recycle-<key>-s<i>)."""
    key: str
    label: str
    what: str                 # one line: what it inherits and what it answers
    seeds: int


RECYCLE_ROWS = (
    ("wide", "wide dense (the parent)", "the parent: dense FFN of width E_r·h, all trainable; its FFNs are cut into "
     "the libraries below", 2),
    ("recycled", "recycled SoME (slice library)", "SoME whose frozen experts are the wide model's FFN slices "
     "(`model.experts_from`); backbone and query networks fresh", 2),
    ("random", "random SoME", "SoME over a random frozen library of the same shape", 1),
    ("dense", "dense, own tokens", "dense FFN at equal active compute (d_ff = k·h) with the recycled row's own "
     "tokens only", 2),
    ("dense-tokens", "dense, equal total tokens", "dense FFN at equal active compute trained for the pipeline's "
     "tokens (the parent's + the student's)", 2),
    ("dense-flops", "dense, equal training FLOPs", "dense FFN at equal active compute trained for the pipeline's "
     "training FLOPs (the parent's + the recycled student's)", 2),
    ("wide-continued", "wide dense continued", "the parent trained on for the student's tokens (its checkpoint "
     "resumed, the cosine schedule recomputed over the longer run)", 1),
    ("dense-upcycled", "upcycled dense student", "dense FFN at equal active compute starting from the parent's "
     "backbone, its first k·h FFN units and its AdamW state (`model.init_from`, parts all), all trainable", 2),
    ("dense-transplant", "FFN transplant", "dense FFN at equal active compute whose trainable FFN starts as the "
     "parent's first k·h units, everything else fresh: what the recycled SoME inherits, minus freezing and "
     "routing", 1),
    ("some-upcycled", "upcycled SoME", "SoME over the slice library starting from the parent's backbone and AdamW "
     "state (parts all): the upcycled dense student's inheritance, with frozen routed experts", 2),
    ("some-cluster", "recycled SoME (cluster library)", "SoME whose frozen experts are the parent's units grouped by "
     "balanced k-means of their input weights (`model.init_units = cluster`, MoEfication); backbone fresh", 1),
)


def recycle_run(key: str, seed: int) -> str:
    return f"recycle-{key}-s{seed}"


def make_recycling_plan(scale_name: str) -> Plan:
    """Every row at its cost: the parent (wide dense) first, then what is cut from it or started
    from it, each seed i's runs from seed i's parent; then the controls at equal total tokens and
    at equal training FLOPs; forgetting for the recycled and random SoME and the dense rows at
    their own and at equal total tokens."""
    s = SCALES[scale_name]
    k, h, er = s.top_k, s.d_expert, s.recycle_experts
    shape = {"model.d_model": str(s.d_model), "model.n_layers": str(s.n_layers)}
    plan = Plan(s, "recycling")
    plan.recycle = [RecycleRow(*row) for row in RECYCLE_ROWS]
    seeds = {row.key: row.seeds for row in plan.recycle}
    labels = {row.key: row.label for row in plan.recycle}
    dense_sets = {"model.ffn": "dense", "model.d_ff": str(k * h)}

    def base(key: str, i: int) -> Run:
        ffn_runs = {"wide": ("dense", {"model.ffn": "dense", "model.d_ff": str(er * h)})}
        ffn, sets = ffn_runs.get(key, ("dense", dense_sets) if key.startswith("dense") else ("some", None))
        if ffn == "some":
            r = _some(recycle_run(key, i), labels[key], s, k, er, h, ("recycling",))
        else:
            r = Run(recycle_run(key, i), labels[key], "dense", dict(sets), claims=("recycling",),
                    d_ff=int(sets["model.d_ff"]))
        seed = {"model.seed": str(SEED + i), "train.seed": str(SEED + i)}
        return dataclasses.replace(r, sets={**r.sets, **seed}, group=key, seed=i)

    for i in range(2):
        wide = recycle_run("wide", i)
        if i < seeds["wide"]:
            plan.runs.append(_phase_a(base("wide", i), s, shape))
        rows = {
            "recycled": {"experts_from": wide},
            "random": {},
            "dense": {},
            "dense-tokens": {"steps": 2 * s.steps_a},
            "dense-upcycled": {"init_from": wide, "init_parts": "all", "init_optimizer": True},
            "dense-transplant": {"init_from": wide, "init_parts": "ffn"},
            "some-upcycled": {"init_from": wide, "init_parts": "all", "init_optimizer": True},
            "some-cluster": {"init_from": wide, "init_parts": "ffn", "init_units": "cluster"},
        }
        for key, how in rows.items():
            if i >= seeds[key]:
                continue
            steps = how.pop("steps", None)
            plan.runs.append(_phase_a(dataclasses.replace(base(key, i), **how), s, shape, steps=steps))
        if i < seeds["dense-flops"]:  # after its parent and the recycled student: it needs their FLOPs
            plan.runs.append(_phase_a(dataclasses.replace(base("dense-flops", i),
                                                          flops_of=(recycle_run("recycled", i),)), s, shape))
        if i < seeds["wide-continued"]:
            parent = plan.run(wide)
            plan.runs.append(dataclasses.replace(parent, name=recycle_run("wide-continued", i), label=labels[
                "wide-continued"], sets={}, continue_from=wide, steps_b=s.steps_a, group="wide-continued"))
    bases = tuple(plan.run(recycle_run(key, 0)) for key in ("recycled", "random", "dense", "dense-tokens"))
    _add_forgetting(plan, bases, ("recycling",))
    return plan


def make_part_plan(scale_name: str, part: str) -> Plan:
    if part == "claims":
        return make_plan(scale_name)
    if part == "gap":
        return make_gap_plan(scale_name)
    if part == "recycling":
        return make_recycling_plan(scale_name)
    raise ValueError(f"unknown part {part!r} (one of {', '.join(PARTS)})")


def merge_plans(plans: list[Plan]) -> Plan:
    """The runs and evals of several parts, each once: a run two parts share (same name) must have
    the same configuration in both (only the parts using it differ)."""
    merged = Plan(plans[0].scale, "+".join(p.part for p in plans))
    runs: dict[str, Run] = {}
    for plan in plans:
        for r in plan.runs:
            if r.name in runs:
                mine = runs[r.name]
                if dataclasses.replace(mine, claims=()) != dataclasses.replace(r, claims=()):
                    raise ValueError(f"run {r.name} is planned twice with different settings ({plan.part})")
                runs[r.name] = dataclasses.replace(mine, claims=tuple(dict.fromkeys(mine.claims + r.claims)))
            else:
                runs[r.name] = r
        merged.gap += plan.gap
        merged.recycle += plan.recycle
        for e in plan.evals:
            if e not in merged.evals:
                merged.evals.append(e)
    merged.runs = list(runs.values())
    return merged
