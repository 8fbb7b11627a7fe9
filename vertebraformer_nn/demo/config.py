"""What ``vertebraformer demo`` is asked for (:class:`DemoConfig`, checked) and where everything goes under its
output folder (:class:`DemoPaths`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .environment import DemoError

DATASET_ID = 599
UNSEEN_STYLE = "lowdose"
#: unseen-style cases the demo predicts and scores, whatever --cases-per-source: four made its id rate a guess (a case
#: weighs a quarter); of 12 the built-in model's is 73.0 % [53.9, 87.8]. With seed 0 they are the 12 of
#: `vertebraformer phantoms P --seed 0 --sources verse --extra-style lowdose --extra-cases 12` (an extra style's
#: cases do not depend on the sources), the set the README's table measures
UNSEEN_CASES = 12
BUDGET_TRAINER = "VertebraFormerTrainer_budget"
#: where each fold's training starts: random weights, or the built-in model's (a fine-tuning, as ``train
#: -pretrained_weights``). By default the built-in model's on a CPU, whose plans build its network and where
#: minutes of training from scratch give a useless model, and scratch on a GPU (plans of another size).
STARTS = ("scratch", "builtin")
CONFIGURATION = "3d_fullres"


@dataclass
class DemoConfig:
    out: Path = Path("demo_out")
    cases_per_source: int = 4
    minutes: float = 10.0
    device: str = "auto"  # auto | cpu | cuda
    trainer: Optional[str] = None  # a fixed-schedule trainer instead of the time-budgeted one
    start: Optional[str] = None  # one of STARTS; None: by device (STARTS' comment)
    max_folds: int = 2
    seed: int = 0
    unseen_style: str = UNSEEN_STYLE
    unseen_cases: int = UNSEEN_CASES
    dataset_id: int = DATASET_ID
    bootstrap: int = 2000  # BCa resamples of the evaluation (10,000 in `vertebraformer evaluate`; a few cases here)

    def n_unseen(self) -> int:
        return int(self.unseen_cases)

    def start_for(self, device: str) -> str:
        """Where training starts on ``device`` (cpu or cuda): ``start``, or by device when it is None."""
        return self.start or ("builtin" if device == "cpu" else "scratch")

    def check(self) -> None:
        from ..phantoms import EXTRA_STYLES

        if self.cases_per_source < 2:
            raise DemoError("--cases-per-source must be at least 2 (a fold needs training and validation cases)")
        if self.n_unseen() < 1:
            raise DemoError("--unseen-cases must be at least 1")
        if not self.minutes > 0:
            raise DemoError("--minutes must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise DemoError(f"-device must be auto, cpu or cuda, not {self.device!r}")
        if self.start is not None and self.start not in STARTS:
            raise DemoError(f"--start must be one of {', '.join(STARTS)}, not {self.start!r}")
        if self.max_folds not in (1, 2):
            raise DemoError("--max-folds must be 1 or 2")
        from ..trainers.registry import TRAINER_NAMES

        if self.trainer is not None and self.trainer not in TRAINER_NAMES:
            raise DemoError(f"unknown trainer {self.trainer!r}; one of {', '.join(TRAINER_NAMES)}")
        if self.unseen_style not in EXTRA_STYLES:
            raise DemoError(f"unknown unseen style {self.unseen_style!r}; one of {', '.join(sorted(EXTRA_STYLES))}")


class DemoPaths:
    """Where everything goes under OUT."""

    def __init__(self, out: Path, config: DemoConfig):
        self.out = Path(out)
        self.sim = self.out / "SIM"
        self.raw = self.out / "nnUNet_raw"
        self.preprocessed = self.out / "nnUNet_preprocessed"
        self.results = self.out / "nnUNet_results"
        self.dataset_name = f"Dataset{config.dataset_id:03d}_MultiSpine"
        self.raw_dataset = self.raw / self.dataset_name
        self.unseen_source = f"extra_{config.unseen_style}"
        self.unseen_images = self.sim / self.unseen_source
        self.unseen_truth = self.sim / "ground_truth" / self.unseen_source
        self.inputs = self.out / "inputs"
        self.validation_inputs = self.inputs / "validation_fold0"
        self.predictions = self.out / "predictions"
        self.reference = self.out / "reference"
        self.evaluation = self.out / "evaluation"
        self.report = self.out / "REPORT.md"
        self.unseen = f"unseen_{config.unseen_style}"

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.out).as_posix()

    def prediction(self, what: str) -> Path:
        return self.predictions / what
