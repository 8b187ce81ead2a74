"""The runs of `some experiment claims` (some_tools.claims) at each scale: which models, with which
settings, on which data, for how many steps, and in what order they run.

Fairness (docs/design.md §10): within a comparison every run has the same d_model, layers, heads, data,
seq_len, batch, steps and so tokens; active FFN parameters per token are equal (k * h for SoME and
MoE = d_ff of the dense baseline). Runs are shared between claims where the configuration is the
same: the default SoME run is claim A's SoME, claim B's k = 2 and claim C's SoME before domain B.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
    budget: str               # the time this scale is meant to take, as documented


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
                  python_bytes=120_000, python_val_fraction=0.1, budget="about 2-3 minutes"),
    # configs/default.toml's model (d 192, 4 layers, 32 experts of width 192, top-2, seq 128,
    # 32 sequences per step) for fewer steps: nine runs and twelve evals in under an hour on 2 cores.
    # One intra-op thread: measured on this shared 2-core machine, a 2-thread trainer fell to
    # ~114 tokens/s whenever another process held a core (its OpenMP threads wait on each other),
    # while one thread kept ~2.7k tokens/s (1.5 s per step); unloaded, 2 threads give ~4.9k.
    "small": Scale("small", "configs/default.toml", d_model=192, n_layers=4, num_experts=32, top_k=2, d_expert=192,
                   steps_a=200, steps_b=100,
                   common=_common(eval_every=50, eval_batches=20, checkpoint_every=50, log_every=10, threads=1),
                   python_bytes=1_500_000, python_val_fraction=0.05, budget="under one hour on 2 cores"),
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

    @property
    def active_ffn(self) -> int:
        """Hidden units a token passes through per FFN: k * h (SoME, MoE), d_ff (dense)."""
        return self.d_ff if self.ffn == "dense" else self.top_k * self.d_expert


@dataclass(frozen=True)
class Eval:
    name: str                 # OUT/evals/<name>.txt
    run: str                  # run directory name
    domain: str               # A or B
    when: str                 # "before" (after domain A only) or "after" (after domain B)
    model: str                # the model's label in claim C


@dataclass
class Plan:
    scale: Scale
    runs: list[Run] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)

    def run(self, name: str) -> Run:
        return next(r for r in self.runs if r.name == name)

    def max_steps(self, run: Run) -> int:
        """train.max_steps of a run: phase B continues the step count of its phase-A run."""
        return self.scale.steps_a + (self.scale.steps_b if run.continue_from else 0)


def _some(name, label, s: Scale, k: int, e: int, h: int, claims, extra=None) -> Run:
    sets = {"model.ffn": "some", "model.top_k": str(k), "model.num_experts": str(e), "model.d_expert": str(h)}
    sets.update(extra or {})
    return Run(name, label, "some", sets, claims=claims, top_k=k, num_experts=e, d_expert=h)


def make_plan(scale_name: str) -> Plan:
    s = SCALES[scale_name]
    k, e, h = s.top_k, s.num_experts, s.d_expert
    shape = {"model.d_model": str(s.d_model), "model.n_layers": str(s.n_layers)}
    plan = Plan(s)
    some = _some("some-k2", "SoME", s, k, e, h, ("A", "B", "C"))
    dense = Run("dense", "dense", "dense", {"model.ffn": "dense", "model.d_ff": str(k * h)}, claims=("A", "C"),
                d_ff=k * h)
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
        plan.runs.append(Run(r.name, r.label, r.ffn, {**shape, **r.sets}, r.domain, None, r.claims, r.top_k,
                             r.num_experts, r.d_expert, r.d_ff))
    for base in (some, dense, moe):
        plan.runs.append(Run(f"{base.name}-then-python", f"{base.label} then Python", base.ffn, {}, "B", base.name,
                             ("C",), base.top_k, base.num_experts, base.d_expert, base.d_ff))
    for base in (some, dense, moe):
        for domain in ("A", "B"):
            plan.evals.append(Eval(f"{base.name}.before.{domain}", base.name, domain, "before", base.label))
            plan.evals.append(Eval(f"{base.name}-then-python.after.{domain}", f"{base.name}-then-python", domain,
                                   "after", base.label))
    return plan
