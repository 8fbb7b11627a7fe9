"""The time plan of ``multispine_protocol.py``: every step's expected seconds, printed before the run starts, so
that a protocol that cannot fit its time limit (``Protocol.max_minutes``: the quick protocol's 75 minutes on 2 CPU
cores) stops before it has spent an hour, not after.

The per-unit costs (:class:`Costs`) were measured on the 2-core machine of the 2026-11-24 quick run, nothing else
running (its ``results.json``: 24 phantoms in 18 s, 27 inputs predicted by VertebraFormer in 54 s, by nnU-Net's
segmentation and lesion networks in 41 s and 22 s, a training step at most 5 s over its budget), with margins
for what that run did not have (the coarse stage's preprocessing and prediction). A training step takes its
wall-clock budget, but at least one epoch (VertebraFormer's 50 iterations: 30 s on the idle 2 cores, 5.5 min
with five people's work on them; nnU-Net's 10: about 60 s idle); everything else scales with the machine's speed
and load, which is why the run also checks, before each training, the plan against the clock
(:func:`projected_total`): steps done count their measured seconds, steps to come their planned ones.

With an epoch budget (``Protocol.epochs``) a VertebraFormer training takes what its iterations take on this machine:
the plan multiplies them by the seconds per iteration the protocol's speed step measured (``child_speed``; before
it, :attr:`Costs.iteration_s`, the 2026-11-24 machine's) and by :attr:`Costs.epoch_overhead` (validation, epoch end,
the first epoch's start-up); nnU-Net's separate models share VertebraFormer's fine model's time on the same fold
(``protocol_setup.BASELINE_SHARES``).

Before the data exist, the case counts are estimated from the phantoms per source (:func:`estimate_counts`);
after the data step the plan is redone with the real counts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from protocol_setup import CV_FOLD, METHODS, MODELS, Protocol

N_SOURCES = 4
N_PERTURBATIONS = 12  # evaluation/perturbations.py: 4 kinds at 3 strengths
#: VertebraFormerTrainer_budget's epochs (its SCHEDULE; not imported: that would load torch into a plan; a test pins
#: the two together)
ITERATIONS_PER_EPOCH = 50


@dataclass(frozen=True)
class Costs:
    """Seconds per unit on 2 CPU cores (see the module docstring; in brackets what the 2026-11-24 run took)."""
    phantom: float = 2.0  # generation, conversion and finalize, per phantom (0.75; 3.6-5 with the machine 3x busy)
    plan_fixed: float = 15.0  # each planning step: imports, worker pools
    plan_per_case: float = 1.0  # fingerprint, plans and preprocessing of 3d_fullres, per training case (0.9)
    plan_coarse_per_case: float = 0.3  # the 3d_lowres preprocessing on top (a fifth of the voxels)
    plan_nnunet_per_case: float = 0.5  # nnU-Net's planner and preprocessing, per case of its dataset (0.35)
    train_overhead: float = 10.0  # beyond the budget, which counts from the trainer's start (at most 0)
    #: seconds per training iteration by configuration before the speed step has measured them (2026-11-24: 50
    #: iterations of the fine model in 30 s)
    iteration_s: Tuple[Tuple[str, float], ...] = (("3d_fullres", 0.5), ("3d_lowres", 0.5))
    speed_probe: float = 40.0  # the speed step, per configuration: a trainer's start-up and 5 iterations
    #: an epoch's seconds over its iterations' as the speed step times them (validation, epoch end, start-up); the
    #: 2026-12-02 run: 1.08 for the fine model (918 s for 800 iterations at 1.06 s), 0.90 for the coarse one
    epoch_overhead: float = 1.1
    process: float = 6.0  # start of a predict process (imports, model loading)
    predict_per_input: float = 2.0  # VertebraFormer: read, preprocess, network, numbering, export (2.0 with start)
    coarse_per_input: float = 0.5  # the coarse whole-field stage on top (one window of 90 x 50 x 50 voxels)
    #: nnU-Net's networks' probabilities (1.5 and 0.8 on 2026-11-24; 4.8 and 3.7 with start-up on 2026-12-04, after
    #: one epoch: a network that marks noise everywhere is also slower to export and evaluate)
    nnunet_seg_per_input: float = 4.5
    nnunet_lesion_per_input: float = 3.5
    #: the separate models' case files from stored probabilities (0.1 on 2026-11-24; 2026-12-04: 1.9 with our decoder,
    #: 4.3 with the per-voxel argmax, whose every speck of a one-epoch network is an instance)
    export_per_input: float = 3.0
    perturb_per_variant: float = 0.2
    evaluate: float = 3.0  # per evaluation: bootstrap intervals of every metric (2 s for 27 inputs)
    evaluate_per_input: float = 0.4  # 0.1 of a trained model's case, 0.5-1.2 of a one-epoch nnU-Net's (2026-12-04)
    efficiency: float = 20.0  # (15)
    report: float = 15.0
    #: the fine model's seconds per training iteration on the machines whose inference the per-input costs above
    #: match (2026-12-05 and -06: 0.78 and 0.80 s, predictions and evaluations 0.97 and 1.07 x the plan); on another
    #: machine they scale with its measured iteration (2026-12-07: 1.47 s, 1.78 x the unscaled plan)
    inference_iteration_s: float = 0.8


@dataclass(frozen=True)
class Counts:
    """The case counts the plan scales with."""
    training_cases: int
    test_cases: Dict[int, int]  # per fold of the protocol


def estimate_counts(protocol: Protocol) -> Counts:
    """The counts before the data exist. MultiSpine-Sim keeps about 0.85 training cases per phantom (the rest are
    test-release cases, duplicates of another source's subject, centroid-only cases; 24 per source of seed 1: 81
    of 96); a cross-validation fold holds about a fifth of them, a leave-one-domain-out fold its source's (VerSe,
    the first: all but about two of its phantoms; 22 of 24)."""
    n = protocol.cases_per_source
    training = int(0.85 * N_SOURCES * n)
    return Counts(training, {fold: (training // 5 if fold < 5 else max(n - 2, 0)) for fold in protocol.folds})


def counts_from_data(protocol: Protocol, data: dict) -> Counts:
    """The counts of the data step's result (``finalize``'s training cases and fold sizes)."""
    sizes = data["fold_sizes"]
    return Counts(int(data["training_cases"]),
                  {fold: int(sizes[fold]["val"]) if fold < len(sizes) else 0 for fold in protocol.folds})


def inputs_of(protocol: Protocol, fold: int, test_cases: int) -> int:
    """Images predicted per method on ``fold``: its test cases, and on the in-domain fold the perturbed variants."""
    if fold != CV_FOLD:
        return test_cases
    perturbed = test_cases if protocol.perturb_cases is None else min(protocol.perturb_cases, test_cases)
    return test_cases + N_PERTURBATIONS * perturbed


def train_seconds(protocol: Protocol, model: str, speed: Optional[Dict[str, float]] = None,
                  costs: Costs = Costs()) -> float:
    """Planned seconds of training ``model`` (module docstring): its wall-clock budget, or its epochs at the
    measured (``speed``: configuration -> seconds per iteration) or assumed speed, or, for a baseline that gets
    another model's time, that model's."""
    shared = protocol.same_time_as(model)
    if shared is not None:
        reference, share = shared
        return share * train_seconds(protocol, reference, speed, costs)
    epochs = protocol.epochs_of(model)
    if epochs is None:
        return protocol.budget_of(model) + costs.train_overhead
    configuration = MODELS[model].configuration
    per_iteration = (speed or {}).get(configuration, dict(costs.iteration_s).get(configuration, 1.0))
    return epochs * ITERATIONS_PER_EPOCH * per_iteration * costs.epoch_overhead + costs.train_overhead


def time_plan(protocol: Protocol, counts: Counts, coarse: bool = True, costs: Costs = Costs(),
              speed: Optional[Dict[str, float]] = None) -> List[Tuple[str, float]]:
    """[(step, seconds)] in the order the protocol runs them, named as its step markers. ``coarse``: whether the
    plans have the coarse configuration (before planning: assume they do, the longer plan); ``speed``: seconds
    per training iteration by configuration, as the speed step measured them (predictions and evaluations scale
    with the fine model's: :attr:`Costs.inference_iteration_s`)."""
    training_cases, test_cases = counts.training_cases, counts.test_cases
    slower = (speed or {}).get("3d_fullres", costs.inference_iteration_s) / costs.inference_iteration_s
    plan: List[Tuple[str, float]] = [
        ("data", costs.phantom * N_SOURCES * protocol.cases_per_source),
        ("plan_ours", costs.plan_fixed
         + training_cases * (costs.plan_per_case + (costs.plan_coarse_per_case if coarse else 0.0)))]
    if any(m.startswith("nnunet") for m in protocol.models(coarse=coarse)):
        plan += [("plan_nnunet", costs.plan_fixed + training_cases * costs.plan_nnunet_per_case),
                 ("lesion_dataset", 1.0),
                 ("plan_nnunet_lesion", costs.plan_fixed + training_cases / N_SOURCES * costs.plan_nnunet_per_case)]
    probes = protocol.speed_probes(coarse)
    if probes:
        plan.append(("speed", costs.speed_probe * len(probes)))
    plan.append(("reference", 0.2 * N_SOURCES * protocol.cases_per_source))
    for fold in protocol.folds:
        for key in protocol.models(fold, coarse):
            plan.append((f"train_{key}_fold{fold}", train_seconds(protocol, key, speed, costs)))
    for fold in protocol.folds:
        n = inputs_of(protocol, fold, test_cases.get(fold, 0))
        plan.append((f"inputs_{fold}", costs.perturb_per_variant * (n - test_cases.get(fold, 0)) + 1.0))
        for key in protocol.models(fold, coarse):
            if key.startswith("nnunet"):
                per = costs.nnunet_seg_per_input if key == "nnunet_seg" else costs.nnunet_lesion_per_input
                plan.append((f"probabilities_{key}_fold{fold}", slower * (costs.process + per * n)))
        for key in protocol.methods_for(fold, coarse):
            plan.append((f"predict_{key}_fold{fold}", slower * predict_seconds(key, n, coarse, costs)))
            plan.append((f"evaluate_{key}_fold{fold}", slower * evaluate_seconds(n, costs)))
    if any(protocol.style_methods(fold, coarse) for fold in protocol.folds):
        plan.append(("data_style", costs.phantom * N_SOURCES * protocol.cases_per_source
                     + 0.2 * N_SOURCES * protocol.cases_per_source))  # its reference too
        for fold in protocol.folds:
            n = test_cases.get(fold, 0)
            plan.append((f"inputs_style_{fold}", 1.0))
            for key in protocol.style_methods(fold, coarse):
                plan.append((f"predict_style_{key}_fold{fold}", slower * predict_seconds(key, n, coarse, costs)))
                plan.append((f"evaluate_style_{key}_fold{fold}", slower * evaluate_seconds(n, costs)))
    plan += [("efficiency", costs.efficiency), ("report", costs.report)]
    return plan


def predict_seconds(key: str, inputs: int, coarse: bool, costs: Costs = Costs()) -> float:
    """Seconds of method ``key``'s prediction of ``inputs`` images at the reference training step: nnU-Net's
    separate models only export (their networks ran in the probabilities steps); VertebraFormer's run ``predict``,
    with the coarse stage where the method uses it and the plans have it."""
    method = METHODS[key]
    if key.startswith("nnunet"):
        return costs.export_per_input * inputs
    with_coarse = coarse and not method.no_coarse and any(MODELS[m].coarse for m in method.models)
    return costs.process + inputs * (costs.predict_per_input + (costs.coarse_per_input if with_coarse else 0))


def evaluate_seconds(inputs: int, costs: Costs = Costs()) -> float:
    """Seconds of one method's evaluation of ``inputs`` predictions at the reference training step."""
    return costs.evaluate + costs.evaluate_per_input * inputs


def projected_total(plan: Sequence[Tuple[str, float]], measured: Dict[str, float]) -> float:
    """Seconds of the whole run: measured seconds of the steps done, planned seconds of the others."""
    return sum(measured.get(step, seconds) for step, seconds in plan)


def step_kind(step: str) -> str:
    """What the plan's summary groups a step under: its name without the fold; every prediction (every
    evaluation) in one group."""
    kind = re.sub(r"_(fold)?\d+$", "", step)
    return kind.split("_")[0] if kind.startswith(("predict_", "evaluate_")) else kind


def format_plan(protocol: Protocol, plan: Sequence[Tuple[str, float]], counts: Counts, coarse: bool,
                measured: Optional[Dict[str, float]] = None) -> str:
    """The plan as text: each kind of step with its count and minutes, the total against the limit."""
    measured = measured or {}
    groups: Dict[str, List[float]] = {}
    for step, seconds in plan:
        groups.setdefault(step_kind(step), []).append(measured.get(step, seconds))
    total = projected_total(plan, measured)
    limit = f" of the limit {protocol.max_minutes:g} min" if protocol.max_minutes else " (no limit)"
    stage = ("with the coarse stage" if coarse else
             "without the coarse stage (no 3d_lowres in the plans: its arms skipped)")
    if protocol.epochs is not None:
        budget = (f"VertebraFormer {protocol.epochs_of('vf')} epochs of {ITERATIONS_PER_EPOCH} iterations, its coarse "
                  f"stage {protocol.epochs_of('vf_coarse')}, nnU-Net's two networks share VertebraFormer's time")
    else:
        budget = f"fine models {protocol.budget_s / 60:g} min each, coarse {protocol.budget_of('vf_coarse') / 60:g} min"
    lines = [f"time plan of the {protocol.name} protocol: {protocol.cases_per_source} phantoms per source (seed "
             f"{protocol.seed}), {counts.training_cases} training cases, test cases per fold {counts.test_cases}, "
             f"{stage}; {budget}"]
    for kind, values in groups.items():
        count = f" x {len(values)}" if len(values) > 1 else ""
        lines.append(f"  {kind:<28}{count:>6} {sum(values) / 60:7.1f} min")
    lines.append(f"  {'total':<34} {total / 60:7.1f} min{limit}"
                 + (" (steps done: measured)" if measured else ""))
    return "\n".join(lines)


class ProtocolStop(RuntimeError):
    """The protocol cannot do what it promises (its time limit, its test cases): stop before spending more."""


def check_plan(protocol: Protocol, plan: Sequence[Tuple[str, float]], measured: Optional[Dict[str, float]] = None,
               when: str = "before the run") -> float:
    """The projected total minutes; raises :class:`ProtocolStop` when it exceeds ``protocol.max_minutes``."""
    total = projected_total(plan, measured or {}) / 60
    if protocol.max_minutes is not None and total > protocol.max_minutes:
        raise ProtocolStop(f"the {protocol.name} protocol's time plan {when} is {total:.1f} min, over its limit of "
                         f"{protocol.max_minutes:g} min: shorten the training (--epochs, --coarse-epochs, or "
                         "--budget-minutes, --coarse-budget-minutes), run fewer methods (--methods) or phantoms "
                         "(--cases-per-source), or raise the limit (--max-minutes); finished steps are reused when "
                         "re-run with the same settings")
    return total


def check_test_cases(protocol: Protocol, test_cases: Dict[int, int]) -> None:
    """Raises :class:`ProtocolStop` when a fold has fewer test cases than the protocol asks for."""
    short = {f: n for f, n in test_cases.items() if n < protocol.min_test_cases}
    if short:
        raise ProtocolStop(f"the {protocol.name} protocol asks for at least {protocol.min_test_cases} test cases per "
                         f"fold; fold(s) {', '.join(f'{f} ({n})' for f, n in sorted(short.items()))} have fewer: "
                         f"raise --cases-per-source (now {protocol.cases_per_source}) or lower --min-test-cases")
