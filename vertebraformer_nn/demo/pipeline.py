"""``vertebraformer demo``: the whole pipeline on MultiSpine-Sim, step by step, reusing finished steps.

Steps (each one's marker in ``OUT/.steps/``, see :mod:`markers`):

1. phantoms     the four MultiSpine-Sim sources plus one unseen scanner style (``--extra-style``), kept out of
                the raw dataset and so out of training (``OUT/SIM``)
2. convert      the four sources into ``OUT/nnUNet_raw/Dataset599_MultiSpine`` and ``convert finalize``
3. plan         ``plan-and-preprocess``: the CPU preset on a CPU, the GPU plans on a GPU
4. train        fold 0 with the time-budgeted trainer (:mod:`timing` decides the budget; or a fixed schedule)
5. train_fold1  fold 1, only when the time allows (the marker says which and why)
6. predict      fold 0 on its validation cases; each fold on the unseen-style cases (probabilities saved when
                there are two folds)
7. ensemble     the two folds' unseen-style predictions (skipped with one fold)
8. evaluate     validation cases against the raw dataset; unseen-style cases against the phantoms' complete truth
9. report       ``OUT/REPORT.md`` (:mod:`report`)

The steps call, in this process, the same Python functions the commands call (phantoms ``generate``, conversion,
``plan_and_preprocess``, the trainer, ``predict_folder``, ``ensemble_folders``, ``evaluate`` and
``write_reports``): one process keeps torch and nnU-Net imported once (a subprocess per step would import them
again, seconds each on a small CPU), shows the steps' own progress bars as they are, and turns a failure into a
traceback. nnU-Net's folders point into OUT for the run and are restored afterwards, so the user's own nnU-Net
folders are never touched. nnU-Net's pools spawn: call :func:`run_demo` under an ``if __name__ == "__main__":``
guard.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import timing
from .config import BUDGET_TRAINER, CONFIGURATION, DemoConfig, DemoPaths
from .environment import (DemoError, claim_output_folder, demo_environment, describe_device, gpu_memory_gb,
                          link_inputs, processes, resolve_device)
from .markers import Markers

STEPS = ("phantoms", "convert", "plan", "train", "train_fold1", "predict", "ensemble", "evaluate", "report")
TITLES = {"phantoms": "generate MultiSpine-Sim phantoms", "convert": "convert the sources into a raw dataset",
          "plan": "plan and preprocess", "train": "train fold 0", "train_fold1": "train fold 1",
          "predict": "predict held-out cases", "ensemble": "ensemble the folds", "evaluate": "evaluate",
          "report": "write REPORT.md"}
#: steps that continue their own partial outputs after an interruption (predict and ensemble --continue)
RESUMABLE = ("predict", "ensemble")


@dataclass
class StepRun:
    """What happened to a step in this invocation."""
    name: str
    seconds: float  # of the run that produced the outputs (an earlier one, when reused)
    reused: bool
    record: dict = field(default_factory=dict)


class Demo:
    def __init__(self, config: DemoConfig, log: Callable[[str], None] = None):
        config.check()
        self.config = config
        self.paths = DemoPaths(config.out, config)
        self.markers = Markers(self.paths.out)
        self.log = log or (lambda msg: print(msg, flush=True))
        self.device = resolve_device(config.device)
        self.runs: Dict[str, StepRun] = {}
        self.redo_from: Optional[str] = None  # first step run (not reused) in this invocation
        self.had_markers = {s for s in STEPS if self.markers.path(s).exists()}
        self.t_start = time.time()

    # ------------------------------------------------------------------ bookkeeping
    def spent_seconds(self) -> float:
        """Time of the demo so far: reused steps count with their earlier durations, the rest is this invocation."""
        return sum(r.seconds for r in self.runs.values() if r.reused) + (time.time() - self.t_start)

    def step(self, name: str, params: dict, body: Callable[[], dict]) -> StepRun:
        """Run step ``name`` unless its marker allows reuse. ``body`` returns ``{"result": {...}, "outputs": [paths]}``.
        Before it runs, the outputs of every later step go, and its own too unless it can continue them
        (:data:`RESUMABLE`, and only after an interruption: no marker, nothing earlier changed)."""
        index = STEPS.index(name) + 1
        head = f"[demo {index}/{len(STEPS)}] {TITLES[name]}"
        if self.redo_from:  # once a step has run, every later step runs too (its marker was removed then)
            why = f"after '{self.redo_from}' ran" if name in self.had_markers else "not run yet"
            resume = False
        else:
            why = self.markers.why_not_reusable(name, params)
            resume = name in RESUMABLE and why == "not run yet"  # only then may it continue its partial outputs
        if why is None:
            record = self.markers.load(name)
            run = StepRun(name, float(record["seconds"]), True, record)
            self.runs[name] = run
            self.log(f"{head}: reused (done earlier in {run.seconds:.1f} s; {self.paths.rel(self.markers.path(name))})")
            return run
        if self.redo_from is None:
            self.redo_from = name
        for later in STEPS[STEPS.index(name):]:
            self.markers.remove(later)
        self._remove(self.owned(name, include_own=not resume))
        self.log(f"{head} ({why}{'; finished cases are kept' if resume else ''}) ...")
        t0 = time.time()
        done = body()
        seconds = time.time() - t0
        record = self.markers.write(name, params, seconds, done.get("result", {}),
                                    [self.paths.rel(p) for p in done.get("outputs", [])])
        self.runs[name] = StepRun(name, seconds, False, record)
        self.log(f"{head}: done in {seconds:.1f} s (demo so far {self.spent_seconds():.0f} s of about "
                 f"{self.config.minutes * 60:.0f} s)")
        return self.runs[name]

    def owned(self, name: str, include_own: bool = True) -> List[Path]:
        """What step ``name`` (with ``include_own``) and the steps after it write: removed before ``name`` runs."""
        p = self.paths
        folds = sorted(p.predictions.glob("*")) if p.predictions.is_dir() else []
        owned = {
            "phantoms": [p.sim],
            "convert": [p.raw_dataset],
            "plan": [p.preprocessed / p.dataset_name],
            "train": [p.results / p.dataset_name],
            "train_fold1": list((p.results / p.dataset_name).glob("*/fold_1")),
            "predict": [p.inputs, *(q for q in folds if not q.name.endswith("_ensemble"))],
            "ensemble": [q for q in folds if q.name.endswith("_ensemble")],
            "evaluate": [p.reference, p.evaluation],
            "report": [p.report],
        }
        first = STEPS.index(name) + (0 if include_own else 1)
        return [path for step in STEPS[first:] for path in owned[step]]

    @staticmethod
    def _remove(paths) -> None:
        for path in paths:
            path = Path(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    # ------------------------------------------------------------------ the run
    def run(self) -> Dict[str, StepRun]:
        c, p = self.config, self.paths
        claim_output_folder(p.out)
        self.log(f"vertebraformer demo: {p.out.resolve()}, {c.cases_per_source} cases per source + "
                 f"{c.n_unseen()} unseen-style ({c.unseen_style}) cases, about {c.minutes:g} min, device "
                 f"{self.device} ({describe_device(self.device)})")
        with demo_environment(p, self.device):
            self.step("phantoms", {"cases_per_source": c.cases_per_source, "seed": c.seed, "unseen": c.unseen_style,
                                   "unseen_cases": c.n_unseen()},
                      self.do_phantoms)
            self.step("convert", {"dataset_id": c.dataset_id}, self.do_convert)
            self.step("plan", {"preset": self.preset()}, self.do_plan)
            self.fold_plan = self.plan_folds()
            self.step("train", self.train_params(0), lambda: self.do_train(0))
            self.step("train_fold1", self.train_params(1), self.do_train_fold1)
            self.step("predict", {"folds": self.trained_folds(), "device": self.device}, self.do_predict)
            self.step("ensemble", {"folds": self.trained_folds()}, self.do_ensemble)
            self.step("evaluate", {"bootstrap": c.bootstrap}, self.do_evaluate)
            self.step("report", {"minutes": c.minutes}, self.do_report)
        self.log(self.summary())
        return self.runs

    def summary(self) -> str:
        lines = ["", "vertebraformer demo: steps"]
        for name in STEPS:
            run = self.runs.get(name)
            if run is not None:
                lines.append(f"  {name:<12} {run.seconds:7.1f} s  {'reused' if run.reused else 'ran'}")
        lines.append(f"  {'total':<12} {sum(r.seconds for r in self.runs.values()):7.1f} s "
                     f"(this invocation {time.time() - self.t_start:.0f} s)")
        lines.append(f"Report: {self.paths.report}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ steps
    def do_phantoms(self) -> dict:
        from ..phantoms import generate

        c, p = self.config, self.paths
        index = generate(p.sim, cases_per_source=c.cases_per_source, seed=c.seed, extra_styles=[c.unseen_style],
                         extra_cases=c.n_unseen(), previews=False, progress=True)
        per_source: Dict[str, int] = {}
        for case in index["cases"]:
            per_source[case["source"]] = per_source.get(case["source"], 0) + 1
        return {"result": {"cases": len(index["cases"]), "per_source": per_source}, "outputs": [p.sim]}

    def do_convert(self) -> dict:
        from ..dataset_conversion import convert_source, finalize
        from ..sources import SOURCES

        c, p = self.config, self.paths
        skipped = []
        for i, source in enumerate(SOURCES):
            report = convert_source(source, p.sim / source, c.dataset_id, append=i > 0, progress=True)
            self.log(report.format())
            skipped += [f"{s.case}: {s.reason}" for s in report.skipped]
        final = finalize(c.dataset_id, num_processes=processes())
        self.log(final.format())
        if not final.ok:
            raise DemoError(f"convert finalize failed: {'; '.join(final.errors) or final.integrity}")
        return {"result": {"training_cases": final.num_training, "test_cases": final.num_test,
                           "fold_sizes": final.fold_sizes, "skipped": skipped},
                "outputs": [p.raw_dataset]}

    def preset(self) -> dict:
        if self.device == "cpu":
            return {"preset": "cpu"}
        return {"preset": "gpu", "gpu_memory_gb": gpu_memory_gb()}

    def do_plan(self) -> dict:
        from ..planners import plan_and_preprocess

        c, p = self.config, self.paths
        preset = self.preset()
        plans = plan_and_preprocess(c.dataset_id, preset=preset["preset"] if preset["preset"] == "cpu" else None,
                                    gpu_memory_gb=preset.get("gpu_memory_gb", 24), num_processes=processes(),
                                    verbose=True)
        folder = p.preprocessed / p.dataset_name
        with open(folder / f"{plans}.json") as f:
            conf = json.load(f)["configurations"][CONFIGURATION]
        return {"result": {"plans": plans, "patch_size": conf.get("patch_size"), "spacing": conf.get("spacing"),
                           "batch_size": conf.get("batch_size")},
                "outputs": [folder / f"{plans}.json", folder / f"{plans}_{CONFIGURATION}"]}

    # training -----------------------------------------------------------------------------------------
    def trainer_name(self) -> str:
        return self.config.trainer or BUDGET_TRAINER

    def split(self, fold: int) -> dict:
        with open(self.paths.raw_dataset / "splits_final.json") as f:
            return json.load(f)[fold]

    def unseen_cases(self) -> List[Path]:
        return sorted(self.paths.unseen_images.glob("*.nii.gz"))

    def plan_folds(self) -> timing.TrainingPlan:
        n_val = len(self.split(0)["val"])
        plan = timing.plan_training(self.config.minutes * 60, self.spent_seconds(), self.device, n_val,
                                    len(self.unseen_cases()), self.config.max_folds)
        if self.config.trainer:  # a fixed schedule: a second fold only if fold 0's duration fits again
            plan = timing.TrainingPlan(self.config.max_folds, plan.seconds_per_fold, plan.after_training_s,
                                       f"fixed schedule {self.config.trainer}")
        return plan

    def train_params(self, fold: int) -> dict:
        params = {"fold": fold, "trainer": self.trainer_name(), "device": self.device, "max_folds": self.config.max_folds,
                  "start": self.config.start_for(self.device)}
        if not self.config.trainer or fold > 0:
            params["minutes"] = self.config.minutes  # the budget, or whether fold 1 fits, follows from the minutes
        return params

    def model_folder(self) -> Path:
        plans = self.runs["plan"].record["result"]["plans"]
        return self.paths.results / self.paths.dataset_name / f"{self.trainer_name()}__{plans}__{CONFIGURATION}"

    def do_train(self, fold: int, budget_s: Optional[float] = None) -> dict:
        t0 = time.time()
        if budget_s is None:
            budget_s = self.fold_plan.seconds_per_fold
            self.log(f"  time plan: {self.fold_plan.reason}; the steps after training are estimated at "
                     f"{self.fold_plan.after_training_s:.0f} s")
        trainer = self._build_trainer(fold)
        weights_from = self._load_start_weights(trainer)
        if hasattr(trainer, "time_budget_s"):
            trainer.time_budget_s = max(timing.MIN_TRAIN_S, budget_s - (time.time() - t0))
            self.log(f"  {self.trainer_name()}: {trainer.time_budget_s:.0f} s of training for fold {fold}")
        trainer.run_training()
        folder = Path(trainer.output_folder)
        dice = [v for v in trainer.logger.local_logger.my_fantastic_logging.get("val_spine_dice", []) if v == v]
        result = {"fold": fold, "trainer": self.trainer_name(), "epochs": int(trainer.current_epoch),
                  "iterations_per_epoch": int(trainer.num_iterations_per_epoch),
                  "model_folder": self.paths.rel(folder.parent), "budget_s": round(budget_s, 1),
                  "last_val_spine_dice": round(float(dice[-1]), 4) if dice else None, "weights_from": weights_from}
        if fold == 0:
            result["time_plan"] = self.fold_plan.reason
        return {"result": result, "outputs": [folder]}

    def _build_trainer(self, fold: int):
        import multiprocessing

        import torch

        from ..trainers.build import build_trainer

        if self.device == "cpu":
            torch.set_num_threads(multiprocessing.cpu_count())
        else:
            torch.backends.cudnn.benchmark = True
        plans = self.runs["plan"].record["result"]["plans"]
        return build_trainer(str(self.config.dataset_id), fold, CONFIGURATION, self.trainer_name(), plans, self.device)

    def _load_start_weights(self, trainer) -> Optional[str]:
        """``--start builtin``: the built-in model's weights into the freshly built network, as ``train
        -pretrained_weights`` does (the demo's plans must build the same network: the CPU preset does on a CPU).
        Returns where the weights came from (None: random initialisation)."""
        if self.config.start_for(self.device) == "scratch":
            return None
        from ..builtin_model import builtin_checkpoint
        from ..trainers.checkpoints import start_from_pretrained

        try:
            checkpoint = builtin_checkpoint()
            fresh = start_from_pretrained(trainer, checkpoint)
        except (OSError, KeyError, ValueError) as e:  # BuiltinModelMissing is an OSError
            raise DemoError(f"--start builtin: {e}") from e
        self.log(f"  weights from the built-in model ({checkpoint})"
                 + (f"; initialised anew: {', '.join(fresh)}" if fresh else ""))
        return "builtin"

    def do_train_fold1(self) -> dict:
        fold0 = self.runs["train"]
        ok, budget, why = timing.second_fold_decision(
            self.config.minutes * 60, self.spent_seconds(), self.device, len(self.split(0)["val"]),
            len(self.unseen_cases()), self.fold_plan.folds, fold0.seconds, bool(self.config.trainer))
        self.log(f"  {why}")
        if not ok:
            return {"result": {"trained": False, "why": why}}
        done = self.do_train(1, budget)
        done["result"].update(trained=True, why=why)
        return done

    def trained_folds(self) -> List[int]:
        fold1 = self.runs.get("train_fold1")
        return [0, 1] if fold1 is not None and fold1.record["result"].get("trained") else [0]

    # prediction ---------------------------------------------------------------------------------------
    def do_predict(self) -> dict:
        p = self.paths
        model = self.model_folder()
        val_cases = self.split(0)["val"]
        link_inputs(p.raw_dataset / "imagesTr", val_cases, p.validation_inputs)
        folds = self.trained_folds()
        outputs = [p.validation_inputs]
        runs = [(p.validation_inputs, p.prediction("validation_fold0"), 0, False)]
        runs += [(p.unseen_images, p.prediction(f"{p.unseen}_fold{f}"), f, len(folds) > 1) for f in folds]
        from ..inference.predict_folder import PredictionError, predict_folder
        from ..inference.runner import RunOptions

        failed = {}
        for source, target, fold, save in runs:
            self.log(f"  predict {p.rel(source) if p.out in source.parents else source} with fold {fold} -> "
                     f"{p.rel(target)}")
            try:
                _, n_failed = predict_folder(source, target, model=model, folds=[fold], device=self.device,
                                             options=RunOptions(save_probabilities=save, resume=True))
            except PredictionError as e:
                raise DemoError(f"vertebraformer predict failed for {source}: {e}") from None
            if n_failed:
                failed[p.rel(target)] = "some cases failed (see summary.csv there)"
            outputs.append(target)
        return {"result": {"validation_cases": val_cases, "unseen_cases": [c.name for c in self.unseen_cases()],
                           "folds": folds, "failed": failed}, "outputs": outputs}

    def do_ensemble(self) -> dict:
        p = self.paths
        folds = self.trained_folds()
        if len(folds) < 2:
            return {"result": {"ensembled": False, "why": "one fold trained: nothing to ensemble"}}
        from ..inference.ensemble import ensemble_folders
        from ..inference.runner import RunOptions

        target = p.prediction(f"{p.unseen}_ensemble")
        status = ensemble_folders([p.prediction(f"{p.unseen}_fold{f}") for f in folds], target,
                                  RunOptions(resume=True), log=self.log)
        if status == 2:
            raise DemoError("vertebraformer ensemble failed (see above)")
        return {"result": {"ensembled": True, "folds": folds, "failed": status == 1}, "outputs": [target]}

    # evaluation ---------------------------------------------------------------------------------------
    def evaluations(self) -> List[dict]:
        """What is evaluated: name, what, model, reference, prediction folder, and the validation fold whose cases
        are evaluated (None: every reference case)."""
        p = self.paths
        items = [{"name": "validation_fold0", "what": "fold 0 validation cases (in-domain, held out of fold 0's "
                  "training)", "model": "fold 0", "reference": p.raw_dataset,
                  "prediction": p.prediction("validation_fold0"), "fold": 0},
                 {"name": f"{p.unseen}_fold0", "what": f"unseen scanner style '{self.config.unseen_style}' (no "
                  "fold trained on it)", "model": "fold 0", "reference": p.reference / p.unseen,
                  "prediction": p.prediction(f"{p.unseen}_fold0"), "fold": None}]
        ensemble = p.prediction(f"{p.unseen}_ensemble")
        if ensemble.is_dir():
            items.append({**items[1], "name": f"{p.unseen}_ensemble", "model": "folds 0+1 ensembled",
                          "prediction": ensemble})
        return items

    def do_evaluate(self) -> dict:
        from ..evaluation.evaluate import EvaluationError, evaluate, exit_status
        from ..evaluation.report import write_reports
        from .reference import truth_reference

        p = self.paths
        n_ref = truth_reference(p.sim, self.paths.unseen_source, p.reference / p.unseen)
        self.log(f"  reference for the unseen style: {n_ref} case(s) from {p.rel(p.unseen_truth)} (complete truth; "
                 "vertebrae cut by the field of view marked as the ignore region, as in training)")
        done, outputs = [], [p.reference]
        for item in self.evaluations():
            json_path = p.evaluation / f"{item['name']}.json"
            self.log(f"  evaluate {p.rel(item['prediction'])} against {p.rel(item['reference'])}")
            try:
                report = evaluate(item["reference"], item["prediction"], cases_from_splits=item["fold"],
                                  n_resamples=self.config.bootstrap)
            except EvaluationError as e:
                raise DemoError(f"vertebraformer evaluate failed for {item['prediction']}: {e}") from None
            outputs += write_reports(report, json_path)
            for failure in report["failures"]:
                self.log(f"  {failure['case']}: {failure['status']}: {'; '.join(failure['problems'])}")
            done.append({"name": item["name"], "status": exit_status(report)})
        return {"result": {"evaluations": done}, "outputs": outputs}

    def do_report(self) -> dict:
        from .report import write_report

        path = write_report(self)
        return {"result": {"report": self.paths.rel(path)}, "outputs": [path]}


def run_demo(config: DemoConfig, log: Callable[[str], None] = None) -> Dict[str, StepRun]:
    """Run (or finish) the demo in ``config.out``; returns what each step did."""
    demo = Demo(config, log)
    try:
        return demo.run()
    except KeyboardInterrupt:
        print("\nvertebraformer demo: stopped. Run the same command again to go on: finished steps are reused.",
              file=sys.stderr)
        raise


__all__ = ["STEPS", "Demo", "StepRun", "run_demo"]
