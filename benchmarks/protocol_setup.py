"""What the protocol benchmark runs (``multispine_protocol.py``) and reports (``protocol_report.py``): its models,
methods, protocols (quick and full) and the machine description, in one place both read.

The coarse whole-field stage (issue 15 part 1) is one more model: ``VertebraFormerTrainer_budget`` on the plans'
``3d_lowres`` configuration, trained beside the fine model so that ``predict`` finds it as the sibling folder
``<Trainer>__<Plans>__3d_lowres`` and runs it first (``--no-coarse`` turns it off). Whether it exists is known only
after planning (``plan-and-preprocess`` writes ``3d_lowres`` when the data ask for a coarser grid): the arms that
need it are then skipped (:meth:`Protocol.methods_for` with ``coarse=False``), and the report says so.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import List, Optional

DATASET_ID = 590
LESION_DATASET_ID = 591
#: the test subjects scanned again in their sources' own styles (the run's seed without domain randomisation)
STYLE_DATASET_ID = 592
NNUNET_PLANS = "nnUNetPlans_vfspacing"
CONFIGURATION = "3d_fullres"
#: nnU-Net's name of the coarse configuration, which VertebraFormer's planner uses for the whole-field stage
COARSE_CONFIGURATION = "3d_lowres"
CV_FOLD, LODO_FOLD = 0, 5


@dataclass(frozen=True)
class Model:
    """One trained network: a trainer on a dataset with a plans file."""
    key: str
    trainer: str
    dataset: int
    plans: str  # "ours" = the VertebraFormer plans of the run
    configuration: str = CONFIGURATION  # COARSE_CONFIGURATION: the coarse stage of the fine model of its trainer

    @property
    def coarse(self) -> bool:
        return self.configuration == COARSE_CONFIGURATION


@dataclass(frozen=True)
class Method:
    """A row of the report: what it is made of, and how its outputs are built."""
    key: str
    title: str
    models: tuple  # Model keys; the first is the one predicted with, a coarse one beside it is its coarse stage
    numbering: str = "decoder"
    no_coarse: bool = False  # predict with --no-coarse (passed only when the coarse stage exists)
    needs_coarse: bool = False  # an arm of the with/without contrast of the coarse stage: skipped without it
    ablation: bool = False  # an ablation of a trained part: runs on the protocol's ablation folds only


MODELS = {
    "vf": Model("vf", "VertebraFormerTrainer_budget", DATASET_ID, "ours"),
    "vf_nomod": Model("vf_nomod", "VertebraFormerTrainer_budget_noModulation", DATASET_ID, "ours"),
    "vf_coarse": Model("vf_coarse", "VertebraFormerTrainer_budget", DATASET_ID, "ours", COARSE_CONFIGURATION),
    "vf_noid": Model("vf_noid", "VertebraFormerTrainer_budget_noIdentification", DATASET_ID, "ours"),
    "vf_nolesion": Model("vf_nolesion", "VertebraFormerTrainer_budget_noLesion", DATASET_ID, "ours"),
    "nnunet_seg": Model("nnunet_seg", "nnUNetTrainer_budget", DATASET_ID, NNUNET_PLANS),
    "nnunet_lesion": Model("nnunet_lesion", "nnUNetTrainer_budget", LESION_DATASET_ID, NNUNET_PLANS),
}
METHODS = {
    "vf": Method("vf", "VertebraFormer", ("vf", "vf_coarse")),
    "vf_nocoarse": Method("vf_nocoarse", "- coarse whole-field stage", ("vf",), no_coarse=True, needs_coarse=True),
    "vf_argmax": Method("vf_argmax", "VertebraFormer, per-voxel argmax numbering (no coarse stage)", ("vf",),
                        numbering="argmax", no_coarse=True),
    "vf_nomod": Method("vf_nomod", "- modulation (no coarse stage)", ("vf_nomod",), no_coarse=True, ablation=True),
    "vf_noid": Method("vf_noid", "- identification branch (no coarse stage)", ("vf_noid",), no_coarse=True,
                      ablation=True),
    "vf_nolesion": Method("vf_nolesion", "- lesion head (no coarse stage)", ("vf_nolesion",), no_coarse=True,
                          ablation=True),
    "nnunet": Method("nnunet", "nnU-Net (separate models) + our numbering decoder", ("nnunet_seg", "nnunet_lesion")),
    "nnunet_argmax": Method("nnunet_argmax", "nnU-Net (separate models), per-voxel argmax numbering",
                            ("nnunet_seg", "nnunet_lesion"), numbering="argmax"),
}

#: how nnU-Net's separate models split VertebraFormer's training time in epoch mode: the lesion network trains on the
#: lesion-annotated quarter of the cases (one source of four)
BASELINE_SHARES = {"nnunet_seg": 0.75, "nnunet_lesion": 0.25}


@dataclass(frozen=True)
class Contrast:
    """A paired difference the report shows with its interval: method ``a`` minus method ``b`` on the same cases."""
    title: str
    a: str
    b: str


CONTRASTS = (
    Contrast("coarse whole-field stage: with - without", "vf", "vf_nocoarse"),
    Contrast("numbering decoder - per-voxel argmax (same model, no coarse stage)", "vf_nocoarse", "vf_argmax"),
    Contrast("modulation: with - without (no coarse stage)", "vf_nocoarse", "vf_nomod"),
    Contrast("nnU-Net's default trainer: our decoder - per-voxel argmax", "nnunet", "nnunet_argmax"),
    Contrast("VertebraFormer - nnU-Net's default trainer (both with our decoder)", "vf", "nnunet"),
)


def without_coarse_stage(key: str, coarse: bool) -> str:
    """The method that stands for ``key`` in a run: without the coarse configuration "VertebraFormer" is the
    model without the coarse stage, so it stands for the skipped row "- coarse whole-field stage"."""
    return "vf" if not coarse and METHODS[key].needs_coarse else key


@dataclass
class Protocol:
    name: str
    cases_per_source: int
    folds: List[int]
    methods: List[str]
    budget_s: float  # wall-clock training budget of every model of the 3d_fullres configuration (without epochs)
    perturb_cases: Optional[int]  # in-domain test cases perturbed (None = all)
    coarse_budget_s: Optional[float] = None  # the coarse stage's training budget (None = budget_s)
    device: str = "cpu"
    seed: int = 0
    bootstrap: int = 10000
    gpu_memory_gb: float = 24.0
    ablation_folds: Optional[List[int]] = None  # folds the ablations (Method.ablation) run on; None = every fold
    min_test_cases: int = 0  # fewer test cases in a fold than this stops the run after the data step
    max_minutes: Optional[float] = None  # a time plan longer than this stops the run before it starts
    #: VertebraFormer's models train this many epochs of 50 iterations, whatever the machine (None: budget_s), and
    #: nnU-Net's baselines for the seconds VertebraFormer's fine model took on the same fold (the same budget)
    epochs: Optional[int] = None
    coarse_epochs: Optional[int] = None  # the coarse stage's epochs (None = epochs)
    #: where VertebraFormer's models start: "scratch" (random weights) or "builtin" (the built-in model's weights of
    #: their configuration, as ``train -pretrained_weights builtin``); nnU-Net's always start from random weights
    start: str = "scratch"
    extra: dict = field(default_factory=dict)

    def budget_of(self, model: str) -> float:
        coarse = MODELS[model].coarse and self.coarse_budget_s is not None
        return float(self.coarse_budget_s if coarse else self.budget_s)

    def epochs_of(self, model: str) -> Optional[int]:
        """The epoch budget of ``model`` (None: a wall-clock budget: nnU-Net's models, or no epochs set)."""
        if self.epochs is None or not MODELS[model].trainer.startswith("VertebraFormer"):
            return None
        return int(self.coarse_epochs if MODELS[model].coarse and self.coarse_epochs is not None else self.epochs)

    def pretrained_of(self, model: str) -> Optional[str]:
        """``-pretrained_weights`` of ``model``'s training: "builtin" for VertebraFormer's models when the protocol
        starts from the built-in model, else None (random weights)."""
        return "builtin" if self.start == "builtin" and MODELS[model].trainer.startswith("VertebraFormer") else None

    def same_time_as(self, model: str) -> Optional[tuple]:
        """(model, share): ``model``'s budget is that share of the other's measured training seconds on the same
        fold, or None. In epoch mode nnU-Net's separate models share VertebraFormer's fine model's time: the
        method as a whole trains as long as the one network it is compared with (:data:`BASELINE_SHARES`)."""
        if self.epochs is None or self.epochs_of(model) is not None:
            return None
        return "vf", BASELINE_SHARES.get(model, 1.0)

    def methods_for(self, fold: int, coarse: bool = True) -> List[str]:
        """The methods run on ``fold``; ``coarse``: whether the plans have the coarse configuration."""
        return [key for key in self.methods
                if (not METHODS[key].ablation or self.ablation_folds is None or fold in self.ablation_folds)
                and (coarse or not METHODS[key].needs_coarse)]

    def style_methods(self, fold: int, coarse: bool = True) -> List[str]:
        """The methods also scored on ``fold``'s test subjects scanned in their sources' own styles: VertebraFormer's
        (one network each, predicted by ``predict`` from the images), not nnU-Net's separate models."""
        return [key for key in self.methods_for(fold, coarse)
                if MODELS[METHODS[key].models[0]].trainer.startswith("VertebraFormer")]

    def methods_run(self, coarse: bool = True) -> List[str]:
        """The methods that run on at least one of the folds (an ablation whose folds are not among them does
        not)."""
        return [key for key in self.methods if any(key in self.methods_for(f, coarse) for f in self.folds)]

    def speed_probes(self, coarse: bool = True) -> List[str]:
        """VertebraFormer's models whose training step the speed step times (one per configuration): those trained
        with an epoch budget, whose time follows from the step."""
        return [key for key in ("vf", "vf_coarse") if key in self.models(coarse=coarse) and self.epochs_of(key)]

    def models(self, fold: Optional[int] = None, coarse: bool = True) -> List[str]:
        """The models the fold trains (every fold's when ``fold`` is None); without the coarse configuration
        no coarse model."""
        methods = self.methods_run(coarse) if fold is None else self.methods_for(fold, coarse)
        return sorted({m for key in methods for m in METHODS[key].models if coarse or not MODELS[m].coarse},
                      key=list(MODELS).index)


#: 24 phantoms per source of seed 1 give 16 test cases in fold 0 and 22 in fold 5 (VerSe held out; 20 per source
#: gave 14 and 18); nine trainings (VertebraFormer, its coarse stage and nnU-Net's two networks on both folds, the
#: no-modulation ablation on fold 5). VertebraFormer's models train a fixed number of epochs, so what they learn
#: does not depend on the machine; whether it all fits 75 minutes does, and the time plan (protocol_plan.py), from
#: a measured training step, says so before the trainings start. They start from the built-in model's weights, as
#: the demo does on a CPU: from random weights the 16 epochs that fit (the 2026-12-02_quick_epochs run, without the
#: nnU-Net and no-modulation arms) reached an identification rate of 12 %, too weak a model for any contrast of the
#: numbering to mean anything; fine-tuned, 6 epochs (3 of the coarse stage) leave room for every arm.
QUICK = Protocol("quick", cases_per_source=24, folds=[CV_FOLD, LODO_FOLD],
                 methods=["vf", "vf_nocoarse", "vf_argmax", "vf_nomod", "nnunet", "nnunet_argmax"],
                 budget_s=360.0, coarse_budget_s=180.0, perturb_cases=2, seed=1, bootstrap=2000,
                 ablation_folds=[LODO_FOLD], min_test_cases=16, max_minutes=75.0, epochs=6, coarse_epochs=3,
                 start="builtin")
FULL = Protocol("full", cases_per_source=20, folds=list(range(9)), methods=list(METHODS), budget_s=3600.0,
                perturb_cases=None, device="cuda")


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "load_average": list(os.getloadavg())}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
