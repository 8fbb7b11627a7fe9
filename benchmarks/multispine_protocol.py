"""The paper's evaluation protocol on MultiSpine-Sim, side by side with nnU-Net (issue 5).

    python benchmarks/multispine_protocol.py --quick                 # at most 75 minutes on 2 CPU cores
    python benchmarks/multispine_protocol.py --device cuda           # the full protocol, meant for a GPU
    python benchmarks/multispine_protocol.py --quick --work W --out benchmarks/results   # (defaults shown below)

Every method gets the same data, folds, preprocessing spacing and training budget. The budget: in the quick
protocol a fixed number of epochs for VertebraFormer's models (``--epochs``, ``--coarse-epochs``; what they learn
then does not depend on the machine, which the 2026-12-02 run showed a wall-clock budget does, by a factor of 4),
with nnU-Net's two separate networks sharing the seconds VertebraFormer's fine model took on the same fold (its
segmentation network 3/4, its lesion network 1/4); otherwise (``--epochs 0``, the full protocol) minutes of wall
clock per model (``--budget-minutes``). In the quick protocol VertebraFormer's models start from the built-in
model's weights of their configuration and fine-tune them (``--start builtin``, as ``train -pretrained_weights
builtin`` and the demo on a CPU), since the epochs that fit 75 minutes on 2 cores do not train one from random
weights; nnU-Net's networks have no such start and train from random weights, so the VertebraFormer - nnU-Net rows
compare what a user gets in the same minutes, not the two methods. The built-in model was trained on other phantoms
(seed 7) of every source, VerSe's included: fold 5 holds VerSe out of the fine-tuning only. ``--start scratch``
(the full protocol's) trains every model from random weights:

* VertebraFormer (all heads, modulation on): ``VertebraFormerTrainer_budget``, with its coarse whole-field stage
  (the same trainer on the plans' ``3d_lowres``, its own budget; ``predict`` finds it beside the fine model) when
  ``plan-and-preprocess`` planned one; the same model without the coarse stage (``predict --no-coarse``) and with
  the per-voxel argmax instead of the numbering decoder (``predict --numbering argmax``);
* the ablations: ``VertebraFormerTrainer_budget_noModulation`` (and, in the full protocol, ``_noIdentification``,
  ``_noLesion``), without a coarse stage of their own, so they compare with the row without it;
* nnU-Net's default trainer and 3D U-Net (``nnUNetTrainer_budget``: nnU-Net's trainer with epochs of 10
  iterations, so a budget of minutes can be fitted) on nnU-Net's own default plans with our target spacing,
  plus a second nnU-Net trained on the lesion maps (the paper's "separate models"). Its vertebra numbering is
  read off its per-voxel labels twice: through our numbering decoder, and as the plain per-voxel argmax.

Folds: the quick protocol trains one cross-validation fold (fold 0, in-domain) and one leave-one-domain-out fold
(fold 5, VerSe held out, cross-domain), the no-modulation ablation on fold 5 only (modulation is there for unseen
scanners); 24 phantoms per source of seed 1 (16 test cases in fold 0, 22 in fold 5); the full protocol all folds.
Before anything runs the protocol prints its time plan (``protocol_plan.py``) and stops when the plan exceeds its
limit (quick: 75 minutes), again after planning with the real case counts, and before each training when the
steps done took so long that the rest no longer fits; the data step stops it when a fold has fewer test cases
than the protocol asks for (quick: 16). Test cases: the fold's validation cases (for a leave-one-domain-out fold,
the held-out domain). Reference: MultiSpine-Sim's complete ground truth (every vertebra, every lesion, body
centroids), not the sources' partial annotations. Perturbations (inference only): Gaussian noise, blur, HU
offset and coarser slices at three strengths each (``vertebraformer_nn/evaluation/perturbations.py``) on the
in-domain test cases.

The test subjects in their sources' styles: the phantoms are drawn with the generator's domain randomisation
(``--randomise 0.5``, each group of scan parameters far beyond the real range with probability 0.5), which reaches
every test case (3-7 groups each in the seed-1 run). The same seed without it gives the same subjects, each scanned
in its source's own style (the scans the paper's test sets stand for); VertebraFormer's methods predict them with
the same models and the report shows both, and their paired difference (record
benchmarks/results/in_style_test_2026-12-07: 10-16 points of id rate in-domain). nnU-Net's separate models are
scored on the run's test cases only.

Efficiency: parameters, per-patch forward latency (each network at its own planned patch, batch 1, eval mode,
the precision its predictor uses), seconds and peak RSS per whole CT (from the predict runs).

The report (markdown, plots, the JSON of every evaluation) goes to ``--out``/<date>_<quick|full>/ (with _<HHMM> when
that day's folder holds another report). Steps are reused when re-run with the same settings (``--work`` keeps their
markers); ``--fresh`` starts over. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

# the scripts beside this one (its folder is on sys.path when it runs as a script)
from protocol_children import child_latency, child_probabilities, child_speed, child_train
from protocol_outputs import combine_separate_models, split_clean_and_perturbed
from protocol_plan import (ProtocolStop, check_plan, check_test_cases, counts_from_data, estimate_counts, format_plan,
                           time_plan)
from protocol_report import write_report
from protocol_setup import (COARSE_CONFIGURATION, CONFIGURATION, CV_FOLD, DATASET_ID, FULL, LESION_DATASET_ID,
                            METHODS, MODELS, NNUNET_PLANS, QUICK, STYLE_DATASET_ID, Method, Model, Protocol, log)
from vertebraformer_nn.demo.environment import link_or_copy

REPO = Path(__file__).resolve().parents[1]
#: the evaluations' JSON files, in the work folder and in every report's folder
EVALUATIONS = "evaluations"
# ------------------------------------------------------------------------------------------------ helpers
def run(cmd: List[str], env: Optional[dict] = None) -> dict:
    """Run a command; its wall seconds and peak RSS (the largest process of its tree, from the kernel's
    accounting of a wrapper's children); raises on failure."""
    probe = ("import resource, subprocess, sys; r = subprocess.call(sys.argv[1:]); "
             "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
             "sys.exit(r)")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], env=env, stderr=subprocess.PIPE, text=True)
    seconds = time.time() - t0
    peak = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    sys.stderr.write("".join(line + "\n" for line in proc.stderr.splitlines() if not line.startswith("PEAK_RSS_KB")))
    if proc.returncode not in (0, 1):  # predict: 1 = some case failed, listed in its summary.csv
        raise RuntimeError(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
    return {"seconds": seconds, "peak_rss_gb": (peak[0] / 1024 ** 2) if peak else None, "status": proc.returncode}


def vf(*args: str) -> List[str]:
    return [sys.executable, "-m", "vertebraformer_nn", *args]


#: the files of one case's reference: label map, lesion map, centroids
REFERENCE_SUFFIXES = (".nii.gz", "_lesion.nii.gz", "_ctd.json")


def link_reference(base: Path, case: str, folder: Path, name: Optional[str] = None) -> None:
    """Links ``case``'s reference files in ``base`` into ``folder``, named ``name`` (a perturbed variant's) or
    ``case``."""
    for suffix in REFERENCE_SUFFIXES:
        link_or_copy(base / f"{case}{suffix}", folder / f"{name or case}{suffix}")


def convert_phantoms(sim: Path, dataset: int, check: bool = True):
    """MultiSpine-Sim's four sources in ``sim`` converted into raw dataset ``dataset`` under ``$nnUNet_raw`` and
    finalised (``check``: nnU-Net's integrity check); the finalize report, raising when it failed."""
    from vertebraformer_nn.dataset_conversion import convert_source, finalize
    from vertebraformer_nn.sources import SOURCES

    for i, source in enumerate(SOURCES):
        convert_source(source, sim / source, dataset, append=i > 0, progress=False)
    final = finalize(dataset, check=check, num_processes=2)
    if not final.ok:
        raise RuntimeError(f"finalize of {sim} failed: {final.errors or final.integrity}")
    return final


def write_truth(sim: Path, target: Path) -> int:
    """The phantoms' complete truth as the reference folder ``target`` (case names, RAS); the number of cases."""
    from vertebraformer_nn.demo.reference import truth_reference
    from vertebraformer_nn.sources import SOURCES

    shutil.rmtree(target, ignore_errors=True)
    return truth_reference(sim, list(SOURCES), target, name="case", orientation="RAS")


# ------------------------------------------------------------------------------------------------ the run
class Benchmark:
    def __init__(self, protocol: Protocol, work: Path, out: Path):
        from vertebraformer_nn.demo.markers import Markers

        self.p = protocol
        self.work = work
        self.out = out
        self.markers = Markers(work)
        self.sim = work / "SIM"
        self.raw = work / "nnUNet_raw"
        self.pre = work / "nnUNet_preprocessed"
        self.results = work / "nnUNet_results"
        self.style = work / "in_style"  # the test subjects scanned in their sources' own styles
        self.env = dict(os.environ, nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.pre),
                        nnUNet_results=str(self.results), nnUNet_compile="f",
                        nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", str(min(8, os.cpu_count() or 1))))
        os.environ.update({k: self.env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results",
                                                     "nnUNet_compile", "nnUNet_def_n_proc")})
        self.record: Dict[str, dict] = {}
        self.coarse = True  # whether the plans have the coarse configuration: assumed until planned
        self.counts = estimate_counts(protocol)

    # -------------------------------------------------------------- step bookkeeping
    def step(self, name: str, params: dict, body) -> dict:
        why = self.why_not_reusable(name, params)
        if why is None:
            log(f"{name}: reused")
            result = self.markers.load(name)["result"]
        else:
            log(f"{name}: running ({why})")
            t0 = time.time()
            result = body()
            self.markers.write(name, self.step_params(params), time.time() - t0, result, [])
            log(f"{name}: done in {time.time() - t0:.0f} s")
        self.record[name] = {"seconds": self.markers.load(name)["seconds"], "result": result}
        return result

    def step_params(self, params: dict) -> dict:
        return {**params, "protocol": asdict(self.p)}

    def why_not_reusable(self, name: str, params: Optional[dict] = None) -> Optional[str]:
        return self.markers.why_not_reusable(name, self.step_params(params or {}))

    def methods_for(self, fold: int) -> List[str]:
        return self.p.methods_for(fold, self.coarse)

    def methods_run(self) -> List[str]:
        return self.p.methods_run(self.coarse)

    def style_methods(self, fold: int) -> List[str]:
        return self.p.style_methods(fold, self.coarse)

    def models(self, fold: Optional[int] = None) -> List[str]:
        return self.p.models(fold, self.coarse)

    def plan(self) -> list:
        return time_plan(self.p, self.counts, self.coarse, speed=self.speed())

    def measured(self) -> Dict[str, float]:
        return {name: r["seconds"] for name, r in self.record.items()}

    def check_time(self, when: str) -> None:
        """Print the plan (steps done with their measured seconds) and stop when it no longer fits."""
        log(format_plan(self.p, self.plan(), self.counts, self.coarse, self.measured()))
        check_plan(self.p, self.plan(), self.measured(), when)

    def dataset_dir(self, dataset: int) -> Path:
        return next(self.raw.glob(f"Dataset{dataset:03d}_*"))

    def splits(self) -> list:
        return json.loads((self.dataset_dir(DATASET_ID) / "splits_final.json").read_text())

    # -------------------------------------------------------------- data and plans
    def do_data(self) -> dict:
        from vertebraformer_nn.phantoms import generate

        for folder in (self.sim, self.raw, self.pre, self.results):
            shutil.rmtree(folder, ignore_errors=True)
        generate(self.sim, cases_per_source=self.p.cases_per_source, seed=self.p.seed, previews=False, progress=True)
        final = convert_phantoms(self.sim, DATASET_ID)
        return {"training_cases": final.num_training, "fold_sizes": final.fold_sizes}

    def do_plan_ours(self) -> dict:
        from vertebraformer_nn.planners import plan_and_preprocess

        cpu = self.p.device == "cpu"
        plans = plan_and_preprocess(DATASET_ID, preset="cpu" if cpu else None, gpu_memory_gb=self.p.gpu_memory_gb,
                                    num_processes=2, verbose=False)
        configurations = self.plans_json(DATASET_ID, plans)["configurations"]
        conf = configurations[CONFIGURATION]
        coarse = configurations.get(COARSE_CONFIGURATION)
        has_coarse = coarse is not None and (self.pre / self.dataset_dir(DATASET_ID).name /
                                             coarse.get("data_identifier", f"{plans}_{COARSE_CONFIGURATION}")).is_dir()
        return {"plans": plans, "spacing": conf["spacing"], "patch_size": conf["patch_size"],
                "batch_size": conf["batch_size"], "coarse": has_coarse,
                "coarse_spacing": coarse["spacing"] if has_coarse else None,
                "coarse_patch_size": coarse["patch_size"] if has_coarse else None}

    def plans_json(self, dataset: int, plans: str) -> dict:
        name = self.dataset_dir(dataset).name
        return json.loads((self.pre / name / f"{plans}.json").read_text())

    def do_plan_nnunet(self, dataset: int) -> dict:
        """nnU-Net's default ExperimentPlanner at our spacing (``-overwrite_target_spacing``), then its
        preprocessing, as ``nnUNetv2_plan_and_preprocess`` would do."""
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                           plan_experiment_dataset, preprocess_dataset)

        spacing = self.record["plan_ours"]["result"]["spacing"]
        extract_fingerprint_dataset(dataset, num_processes=2, check_dataset_integrity=False, clean=False)
        plan_experiment_dataset(dataset, overwrite_target_spacing=spacing, overwrite_plans_name=NNUNET_PLANS)
        preprocess_dataset(dataset, NNUNET_PLANS, [CONFIGURATION], [2], show_progress_bar=False)
        splits = self.dataset_dir(dataset) / "splits_final.json"
        shutil.copyfile(splits, self.pre / self.dataset_dir(dataset).name / "splits_final.json")
        conf = self.plans_json(dataset, NNUNET_PLANS)["configurations"][CONFIGURATION]
        return {"spacing": conf["spacing"], "patch_size": conf["patch_size"], "batch_size": conf["batch_size"]}

    def do_lesion_dataset(self) -> dict:
        """The nnU-Net lesion model's raw dataset: the cases whose source annotates lesions, their lesion maps as
        labels, the main dataset's folds restricted to them (a fold left with no such validation case monitors
        on one training case: its validation during training is only nnU-Net's progress curve)."""
        from vertebraformer_nn.case_facts import read_case_info

        main = self.dataset_dir(DATASET_ID)
        info = json.loads((main / "dataset.json").read_text())
        cases = sorted(c for c, facts in read_case_info(info).items()
                       if facts.lesion_annotated and (main / "lesionsTr" / f"{c}.nii.gz").is_file())
        target = self.raw / f"Dataset{LESION_DATASET_ID:03d}_MultiSpineLesions"
        shutil.rmtree(target, ignore_errors=True)
        for case in cases:
            link_or_copy(main / "imagesTr" / f"{case}_0000.nii.gz", target / "imagesTr" / f"{case}_0000.nii.gz")
            link_or_copy(main / "lesionsTr" / f"{case}.nii.gz", target / "labelsTr" / f"{case}.nii.gz")
        dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1},
                        "numTraining": len(cases), "file_ending": ".nii.gz",
                        "overwrite_image_reader_writer": info.get("overwrite_image_reader_writer"),
                        "description": f"lesion maps of the lesion-annotated cases of {main.name} (benchmark)"}
        (target / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
        chosen = set(cases)
        splits = []
        for entry in self.splits():
            train = [c for c in entry["train"] if c in chosen]
            val = [c for c in entry["val"] if c in chosen] or train[:1]
            splits.append({"train": train, "val": val})
        (target / "splits_final.json").write_text(json.dumps(splits, indent=1))
        return {"cases": len(cases)}

    # -------------------------------------------------------------- training
    def model_folder(self, model: Model) -> Path:
        plans = self.our_plans() if model.plans == "ours" else model.plans
        name = self.dataset_dir(model.dataset).name
        return self.results / name / f"{model.trainer}__{plans}__{model.configuration}"

    def our_plans(self) -> str:
        return self.record["plan_ours"]["result"]["plans"]

    def speed(self) -> Dict[str, float]:
        """Seconds per training iteration by configuration, from the speed step (empty before it)."""
        result = self.record.get("speed", {}).get("result") or {}
        return {conf: r["seconds_per_iteration"] for conf, r in result.items()}

    def do_speed(self) -> dict:
        """VertebraFormer's training step timed on each configuration it trains (``child_speed``), on the first fold,
        so that the time plan of an epoch budget follows from this machine's speed."""
        out = {}
        for key in self.p.speed_probes(self.coarse):
            model, fold = MODELS[key], self.p.folds[0]
            target = self.work / f"speed_{model.configuration}.json"
            run([sys.executable, str(Path(__file__).resolve()), "_speed", str(model.dataset), str(fold), model.trainer,
                 self.our_plans(), self.p.device, model.configuration, str(target)], env=self.env)
            out[model.configuration] = json.loads(target.read_text())
        return out

    def budget_env(self, model: Model, fold: int) -> dict:
        """The training budget of ``model`` on ``fold`` as the budget trainers read it: an epoch count, or seconds
        (nnU-Net's baselines in epoch mode: their share of the seconds VertebraFormer's fine model took on the
        fold)."""
        from vertebraformer_nn.trainers.budget import BUDGET_ENV, EPOCHS_ENV

        epochs = self.p.epochs_of(model.key)
        if epochs is not None:
            return {EPOCHS_ENV: str(epochs)}
        shared = self.p.same_time_as(model.key)
        done = self.record.get(f"train_{shared[0]}_fold{fold}") if shared else None
        seconds = shared[1] * done["result"]["train_seconds"] if done else self.p.budget_of(model.key)
        return {BUDGET_ENV: str(seconds)}

    def do_train(self, model: Model, fold: int) -> dict:
        from vertebraformer_nn.trainers.budget import BUDGET_ENV, EPOCHS_ENV

        plans = self.our_plans() if model.plans == "ours" else model.plans
        shutil.rmtree(self.model_folder(model) / f"fold_{fold}", ignore_errors=True)
        env = {k: v for k, v in self.env.items() if k not in (BUDGET_ENV, EPOCHS_ENV)}  # only this model's budget
        env.update(self.budget_env(model, fold))
        done = run([sys.executable, str(Path(__file__).resolve()), "_train", str(model.dataset), str(fold),
                    model.trainer, plans, self.p.device, model.configuration, self.p.pretrained_of(model.key) or ""],
                   env=env)
        progress = json.loads((self.model_folder(model) / f"fold_{fold}" / "training_summary.json").read_text())
        return {**done, **progress}

    # -------------------------------------------------------------- prediction
    def test_cases(self, fold: int) -> List[str]:
        return list(self.splits()[fold]["val"])

    def do_inputs(self, fold: int) -> dict:
        """The fold's test images (links into the raw dataset), plus, for the in-domain fold, the perturbed
        variants of its first ``perturb_cases`` test cases."""
        import SimpleITK as sitk

        from vertebraformer_nn.evaluation.perturbations import PERTURBATIONS, perturb, variant_name
        from vertebraformer_nn.image_io import read_image, write_image

        folder = self.work / "inputs" / f"fold{fold}"
        shutil.rmtree(folder, ignore_errors=True)
        images = self.dataset_dir(DATASET_ID) / "imagesTr"
        cases = self.test_cases(fold)
        for case in cases:
            link_or_copy(images / f"{case}_0000.nii.gz", folder / f"{case}_0000.nii.gz")
        variants = []
        if fold == CV_FOLD:
            chosen = cases if self.p.perturb_cases is None else cases[: self.p.perturb_cases]
            for case in chosen:
                image = read_image(images / f"{case}_0000.nii.gz")
                for kind, strengths in PERTURBATIONS.items():
                    for level, strength in enumerate(strengths, 1):
                        name = variant_name(case, kind, level)
                        out = perturb(image, kind, strength, seed=self.p.seed + level)
                        write_image(sitk.Cast(out, sitk.sitkFloat32), folder / f"{name}_0000.nii.gz")
                        variants.append(name)
        return {"cases": cases, "variants": variants}

    def predict(self, model: Model, fold: int, target: Path, numbering: str = "decoder",
                no_coarse: bool = False, inputs: Optional[Path] = None) -> dict:
        """``vertebraformer predict`` of the fold's inputs (or of the images in ``inputs``); ``no_coarse``: without
        the coarse stage (the flag is passed only when the plans have one, so the command also runs where
        ``predict`` knows no such stage)."""
        shutil.rmtree(target, ignore_errors=True)
        cmd = vf("predict", "-i", str(inputs or self.work / "inputs" / f"fold{fold}"), "-o", str(target), "-m",
                 str(self.model_folder(model)), "-f", str(fold), "-device", self.p.device, "--numbering", numbering,
                 "--save_probabilities")  # kept, so that a later numbering can score the same networks again
        done = run(cmd + (["--no-coarse"] if no_coarse and self.coarse else []), env=self.env)
        return {**done, **self.case_seconds(target)}

    @staticmethod
    def case_seconds(folder: Path) -> dict:
        """Mean seconds per case of each stage, from predict's summary.csv."""
        from vertebraformer_nn.inference.summary import STAGES, read_summary

        rows = read_summary(folder / "summary.csv")
        ok = [r for r in rows if r.get("status") == "ok"]
        means = {}
        for stage in (*STAGES, "total"):
            values = [float(r[f"seconds_{stage}"]) for r in ok if r.get(f"seconds_{stage}") not in (None, "")]
            if values:
                means[f"seconds_{stage}"] = sum(values) / len(values)
        return {"cases_ok": len(ok), "cases_failed": len(rows) - len(ok), **means}

    def probabilities_folder(self, key: str, fold: int) -> Path:
        return self.work / "predictions" / f"{key}_probabilities_fold{fold}"

    def do_probabilities(self, model: Model, fold: int) -> dict:
        """An nnU-Net network's probabilities of every test input (``predict``'s network stages only: the lesion
        network has 2 classes, which ``predict``'s vertebra export rightly refuses)."""
        target = self.probabilities_folder(model.key, fold)
        shutil.rmtree(target, ignore_errors=True)
        done = run([sys.executable, str(Path(__file__).resolve()), "_probabilities", str(self.model_folder(model)),
                    str(fold), str(self.work / "inputs" / f"fold{fold}"), str(target), self.p.device], env=self.env)
        rows = json.loads((target / "seconds.json").read_text())
        means = {f"seconds_{k}": sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "case"} if rows else {}
        return {**done, "cases_ok": len(rows), **means}

    def do_predict(self, method: Method, fold: int) -> dict:
        target = self.predictions(method, fold)
        if not method.key.startswith("nnunet"):
            return self.predict(MODELS[method.models[0]], fold, target, method.numbering, method.no_coarse)
        # nnU-Net: each network predicted once with its probabilities kept (steps probabilities_*), then the case
        # files exported from both with the method's numbering
        t0 = time.time()
        seg_key, lesion_key = method.models
        n = combine_separate_models(self.probabilities_folder(seg_key, fold),
                                    self.probabilities_folder(lesion_key, fold), target, method.numbering)
        seg = self.record[f"probabilities_{seg_key}_fold{fold}"]["result"]
        les = self.record[f"probabilities_{lesion_key}_fold{fold}"]["result"]
        combined = {"seconds": seg["seconds"] + les["seconds"] + time.time() - t0, "cases_ok": n,
                    "peak_rss_gb": max(seg["peak_rss_gb"] or 0, les["peak_rss_gb"] or 0)}
        for stage in ("read", "preprocess", "network", "total"):  # per case: both networks ran on it
            combined[f"seconds_{stage}"] = seg.get(f"seconds_{stage}", 0) + les.get(f"seconds_{stage}", 0)
        return combined

    def predictions(self, method: Method, fold: int) -> Path:
        return self.work / "predictions" / f"{method.key}_fold{fold}"

    # -------------------------------------------------------------- evaluation
    def do_reference(self) -> dict:
        return {"cases": write_truth(self.sim, self.work / "reference")}

    def variant_reference(self, fold: int) -> Path:
        """The reference folder for the fold's predictions: the truth, plus links for each perturbed variant."""
        from vertebraformer_nn.evaluation.perturbations import parse_variant

        base = self.work / "reference"
        folder = self.work / "reference_variants" / f"fold{fold}"
        shutil.rmtree(folder, ignore_errors=True)
        for name in self.record[f"inputs_{fold}"]["result"]["variants"]:
            link_reference(base, parse_variant(name)[0], folder, name)
        for case in self.test_cases(fold):
            link_reference(base, case, folder)
        return folder

    def do_evaluate(self, method: Method, fold: int) -> dict:
        return self.evaluated(self.variant_reference(fold), self.predictions(method, fold),
                              f"{method.key}_fold{fold}.json")

    def evaluated(self, reference: Path, predictions: Path, name: str) -> dict:
        """The evaluation of ``predictions`` against ``reference``, its JSON written as ``name`` into the work
        folder, whence every report copies them (a report of a rerun that reuses the step goes to another folder):
        its path relative to the report's folder, and its headline numbers."""
        from vertebraformer_nn.evaluation.evaluate import evaluate
        from vertebraformer_nn.evaluation.report import write_json

        report = evaluate(reference, predictions, n_resamples=self.p.bootstrap, seed=self.p.seed)
        path = self.work / EVALUATIONS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(report, path)
        return {"json": f"{EVALUATIONS}/{name}", **split_clean_and_perturbed(report, self.p)}

    # -------------------------------------------------------------- the test subjects in their sources' styles
    def do_data_style(self) -> dict:
        """The run's phantoms again without domain randomisation: every random draw of the generator is keyed by
        its case and purpose (``phantoms/plan.py``), so the subjects (anatomy, lesions, fractures; the vertebrae in
        view, except where a randomised field of view or slices changed them) are the same and each scan is in its
        source's own style, where the run's were drawn beyond the real range in
        groups of scan parameters (``ground_truth/index.json``: ``scan.randomised``). Converted as the run's data,
        into a raw folder of their own, and their complete truth as the reference."""
        from vertebraformer_nn.phantoms import generate

        shutil.rmtree(self.style, ignore_errors=True)
        sim = self.style / "SIM"
        generate(sim, cases_per_source=self.p.cases_per_source, seed=self.p.seed, previews=False, progress=False,
                 randomise=0.0)
        os.environ["nnUNet_raw"] = str(self.style / "nnUNet_raw")  # the converters write under $nnUNet_raw
        try:
            convert_phantoms(sim, STYLE_DATASET_ID, check=False)
        finally:
            os.environ["nnUNet_raw"] = str(self.raw)
        return {"cases": write_truth(sim, self.style / "reference")}

    def do_inputs_style(self, fold: int) -> dict:
        """The fold's test subjects in style: their images and their truth, the test cases only."""
        images = next((self.style / "nnUNet_raw").glob(f"Dataset{STYLE_DATASET_ID:03d}_*")) / "imagesTr"
        inputs, reference = self.style / "inputs" / f"fold{fold}", self.style / "reference_folds" / f"fold{fold}"
        for folder in (inputs, reference):
            shutil.rmtree(folder, ignore_errors=True)
        for case in self.test_cases(fold):
            link_or_copy(images / f"{case}_0000.nii.gz", inputs / f"{case}_0000.nii.gz")
            link_reference(self.style / "reference", case, reference)
        return {"cases": len(self.test_cases(fold))}

    def do_predict_style(self, method: Method, fold: int) -> dict:
        return self.predict(MODELS[method.models[0]], fold, self.style / "predictions" / f"{method.key}_fold{fold}",
                            method.numbering, method.no_coarse, inputs=self.style / "inputs" / f"fold{fold}")

    def do_evaluate_style(self, method: Method, fold: int) -> dict:
        return self.evaluated(self.style / "reference_folds" / f"fold{fold}",
                              self.style / "predictions" / f"{method.key}_fold{fold}",
                              f"{method.key}_fold{fold}_in_style.json")

    # -------------------------------------------------------------- efficiency
    def do_efficiency(self) -> dict:
        out = {}
        for key in ("vf", "vf_coarse", "nnunet_seg"):
            model = MODELS[key]
            if key not in self.models():
                continue
            fold = next(f for f in self.p.folds if key in self.models(f))
            done = run([sys.executable, str(Path(__file__).resolve()), "_latency", str(self.model_folder(model)),
                        str(fold), self.p.device], env=self.env)
            out[key] = json.loads((self.model_folder(model) / f"fold_{fold}" / "latency.json").read_text())
            out[key]["probe_peak_rss_gb"] = done["peak_rss_gb"]
        return out

    # -------------------------------------------------------------- the whole run
    def run(self) -> Path:
        started = time.time()
        self.check_time("before the run (test cases estimated, coarse stage assumed)")
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.step("data", {}, self.do_data)
        self.counts = counts_from_data(self.p, data)
        check_test_cases(self.p, self.counts.test_cases)
        self.step("plan_ours", {}, self.do_plan_ours)
        self.coarse = bool(self.record["plan_ours"]["result"].get("coarse"))
        if not self.coarse:
            log(f"the plans have no {COARSE_CONFIGURATION} configuration: the coarse whole-field stage is not "
                "trained, its arms are skipped")
        if self.p.speed_probes(self.coarse):
            self.step("speed", {}, self.do_speed)
        self.check_time("after planning (real case counts" + (", this machine's training step)" if self.p.epochs
                                                             is not None else ")"))
        if any(m.startswith("nnunet") for m in self.models()):
            self.step("plan_nnunet", {}, lambda: self.do_plan_nnunet(DATASET_ID))
            self.step("lesion_dataset", {}, self.do_lesion_dataset)
            self.step("plan_nnunet_lesion", {}, lambda: self.do_plan_nnunet(LESION_DATASET_ID))
        self.step("reference", {}, self.do_reference)
        for fold in self.p.folds:
            for key in self.models(fold):
                if self.why_not_reusable(f"train_{key}_fold{fold}") is not None:
                    check_plan(self.p, self.plan(), self.measured(), f"before training {key} on fold {fold}")
                self.step(f"train_{key}_fold{fold}", {}, lambda k=key, f=fold: self.do_train(MODELS[k], f))
        for fold in self.p.folds:
            self.step(f"inputs_{fold}", {}, lambda f=fold: self.do_inputs(f))
            for key in self.models(fold):
                if key.startswith("nnunet"):
                    self.step(f"probabilities_{key}_fold{fold}", {},
                              lambda k=key, f=fold: self.do_probabilities(MODELS[k], f))
            for key in self.methods_for(fold):
                self.step(f"predict_{key}_fold{fold}", {}, lambda k=key, f=fold: self.do_predict(METHODS[k], f))
                self.step(f"evaluate_{key}_fold{fold}", {}, lambda k=key, f=fold: self.do_evaluate(METHODS[k], f))
        if any(self.style_methods(fold) for fold in self.p.folds):
            self.step("data_style", {}, self.do_data_style)
            for fold in self.p.folds:
                self.step(f"inputs_style_{fold}", {}, lambda f=fold: self.do_inputs_style(f))
                for key in self.style_methods(fold):
                    self.step(f"predict_style_{key}_fold{fold}", {},
                              lambda k=key, f=fold: self.do_predict_style(METHODS[k], f))
                    self.step(f"evaluate_style_{key}_fold{fold}", {},
                              lambda k=key, f=fold: self.do_evaluate_style(METHODS[k], f))
        self.step("efficiency", {}, self.do_efficiency)
        if (self.work / EVALUATIONS).is_dir():
            shutil.copytree(self.work / EVALUATIONS, self.out / EVALUATIONS, dirs_exist_ok=True)
        return write_report(self, time.time() - started)


# ------------------------------------------------------------------------------------------------ main
def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_train":
        child_train(argv[1], int(argv[2]), argv[3], argv[4], argv[5], argv[6], argv[7])
        return 0
    if argv and argv[0] == "_probabilities":
        child_probabilities(argv[1], int(argv[2]), argv[3], argv[4], argv[5])
        return 0
    if argv and argv[0] == "_speed":
        child_speed(argv[1], int(argv[2]), argv[3], argv[4], argv[5], argv[6], argv[7])
        return 0
    if argv and argv[0] == "_latency":
        child_latency(argv[1], int(argv[2]), argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CPU-scale protocol (at most 75 min on 2 cores)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cpu with --quick, else cuda")
    parser.add_argument("--budget-minutes", type=float, help="training budget of every 3d_fullres model (quick: 6, "
                        "full: 60)")
    parser.add_argument("--epochs", type=int, help="VertebraFormer's models train this many epochs of 50 iterations "
                        "and nnU-Net's for the time that took (quick: 6); 0: wall-clock budgets instead")
    parser.add_argument("--coarse-epochs", type=int, help="the coarse stage's epochs (quick: 3)")
    parser.add_argument("--start", choices=["builtin", "scratch"], help="where VertebraFormer's models start: the "
                        "built-in model's weights, fine-tuned (quick), or random weights (full)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="the methods to run (default: the "
                        "protocol's; fewer methods, fewer trainings)")
    parser.add_argument("--coarse-budget-minutes", type=float, help="training budget of the coarse whole-field "
                        "stage's 3d_lowres model (quick: 3, full: as --budget-minutes)")
    parser.add_argument("--cases-per-source", type=int, help="phantoms per source (quick: 24, full: 20)")
    parser.add_argument("--seed", type=int, help="phantom seed (quick: 1, full: 0)")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to train and test (quick: 0 5, full: 0-8)")
    parser.add_argument("--min-test-cases", type=int, help="stop after the data step when a fold has fewer test "
                        "cases (quick: 16, full: 0)")
    parser.add_argument("--max-minutes", type=float, help="stop when the time plan exceeds this (quick: 75, full: no "
                        "limit; 0: no limit)")
    parser.add_argument("--work", type=Path, help="working folder (default /tmp/vertebraformer_protocol_<name>)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                        help="the report goes to OUT/<date>_<name>/ (default benchmarks/results)")
    parser.add_argument("--fresh", action="store_true", help="forget the finished steps in --work")
    args = parser.parse_args(argv)

    protocol = Protocol(**asdict(QUICK if args.quick else FULL))
    if args.device:
        protocol.device = args.device
    if args.budget_minutes:
        protocol.budget_s = 60.0 * args.budget_minutes
    if args.coarse_budget_minutes:
        protocol.coarse_budget_s = 60.0 * args.coarse_budget_minutes
    if args.epochs is not None:
        protocol.epochs = args.epochs or None
    if args.coarse_epochs:
        protocol.coarse_epochs = args.coarse_epochs
    if args.start:
        protocol.start = args.start
    if args.methods:
        protocol.methods = list(args.methods)
    if args.cases_per_source:
        protocol.cases_per_source = args.cases_per_source
    if args.seed is not None:
        protocol.seed = args.seed
    if args.folds:
        protocol.folds = list(args.folds)
    if args.min_test_cases is not None:
        protocol.min_test_cases = args.min_test_cases
    if args.max_minutes is not None:
        protocol.max_minutes = args.max_minutes if args.max_minutes > 0 else None
    work = (args.work or Path(f"/tmp/vertebraformer_protocol_{protocol.name}")).resolve()
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    out = (args.out / f"{time.strftime('%Y-%m-%d')}_{protocol.name}").resolve()
    if (out / "REPORT.md").exists():  # another run's report of the same day: keep it
        out = out.with_name(f"{out.name}_{time.strftime('%H%M')}")
    try:
        report = Benchmark(protocol, work, out).run()
    except ProtocolStop as e:
        log(f"stopped: {e}")
        return 2
    log(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
