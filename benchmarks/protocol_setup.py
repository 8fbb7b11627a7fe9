"""What the protocol benchmark runs (``multispine_protocol.py``) and reports (``protocol_report.py``): its models,
methods, protocols (quick and full) and the machine description, in one place both read.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import List, Optional

DATASET_ID = 590
LESION_DATASET_ID = 591
NNUNET_PLANS = "nnUNetPlans_vfspacing"
CONFIGURATION = "3d_fullres"
CV_FOLD, LODO_FOLD = 0, 5


@dataclass(frozen=True)
class Model:
    """One trained network: a trainer on a dataset with a plans file."""
    key: str
    trainer: str
    dataset: int
    plans: str  # "ours" = the VertebraFormer plans of the run


@dataclass(frozen=True)
class Method:
    """A row of the report: what it is made of, and how its outputs are built."""
    key: str
    title: str
    models: tuple  # Model keys
    numbering: str = "decoder"


MODELS = {
    "vf": Model("vf", "VertebraFormerTrainer_budget", DATASET_ID, "ours"),
    "vf_nomod": Model("vf_nomod", "VertebraFormerTrainer_budget_noModulation", DATASET_ID, "ours"),
    "vf_noid": Model("vf_noid", "VertebraFormerTrainer_budget_noIdentification", DATASET_ID, "ours"),
    "vf_nolesion": Model("vf_nolesion", "VertebraFormerTrainer_budget_noLesion", DATASET_ID, "ours"),
    "nnunet_seg": Model("nnunet_seg", "nnUNetTrainer_budget", DATASET_ID, NNUNET_PLANS),
    "nnunet_lesion": Model("nnunet_lesion", "nnUNetTrainer_budget", LESION_DATASET_ID, NNUNET_PLANS),
}
METHODS = {
    "vf": Method("vf", "VertebraFormer", ("vf",)),
    "vf_nomod": Method("vf_nomod", "- modulation", ("vf_nomod",)),
    "vf_noid": Method("vf_noid", "- identification branch", ("vf_noid",)),
    "vf_nolesion": Method("vf_nolesion", "- lesion head", ("vf_nolesion",)),
    "nnunet": Method("nnunet", "nnU-Net (separate models) + our numbering decoder", ("nnunet_seg", "nnunet_lesion")),
    "nnunet_argmax": Method("nnunet_argmax", "nnU-Net (separate models), per-voxel argmax numbering",
                            ("nnunet_seg", "nnunet_lesion"), numbering="argmax"),
}


@dataclass
class Protocol:
    name: str
    cases_per_source: int
    folds: List[int]
    methods: List[str]
    budget_s: float  # wall-clock training budget of every model
    perturb_cases: Optional[int]  # in-domain test cases perturbed (None = all)
    device: str = "cpu"
    seed: int = 0
    bootstrap: int = 10000
    gpu_memory_gb: float = 24.0
    ablation_folds: Optional[List[int]] = None  # folds the ablations ("vf_no...") run on; None = every fold
    extra: dict = field(default_factory=dict)

    def methods_for(self, fold: int) -> List[str]:
        return [key for key in self.methods
                if not key.startswith("vf_no") or self.ablation_folds is None or fold in self.ablation_folds]

    def methods_run(self) -> List[str]:
        """The methods that run on at least one of the folds (an ablation whose folds are not among them does
        not)."""
        return [key for key in self.methods if any(key in self.methods_for(f) for f in self.folds)]

    def models(self, fold: Optional[int] = None) -> List[str]:
        """The models the fold trains (every fold's when ``fold`` is None)."""
        methods = self.methods_run() if fold is None else self.methods_for(fold)
        return sorted({m for key in methods for m in METHODS[key].models}, key=list(MODELS).index)


QUICK = Protocol("quick", cases_per_source=6, folds=[CV_FOLD, LODO_FOLD], methods=["vf", "vf_nomod", "nnunet",
                 "nnunet_argmax"], budget_s=480.0, perturb_cases=2, bootstrap=2000, ablation_folds=[LODO_FOLD])
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
