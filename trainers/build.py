"""The trainer as ``vertebraformer train`` builds it, for the command, its DDP ranks, the demo and the benchmarks:
nnU-Net's folders set up, our shim folder on ``nnUNet_extTrainer``, the fold checked against the splits file, the
plans found (``find_plans``) and loaded with ``continue_training`` set, the trainer class instantiated directly."""
from __future__ import annotations

import glob
import json
import os
from typing import Optional

DEFAULT_TRAINER = "VertebraFormerTrainer"
NETWORK_MARKER = "vertebraformer_nn.network"


def find_plans(preprocessed_dataset_folder: str, device: Optional[str] = None) -> str:
    """The identifier of the plans file in the folder whose configurations use the VertebraFormer network; with
    both a CPU-preset and a GPU plans file there, the one matching ``device``."""
    found, cpu_preset = [], {}
    for path in sorted(glob.glob(os.path.join(preprocessed_dataset_folder, "*.json"))):
        try:
            with open(path) as f:
                plans = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(plans, dict) or "configurations" not in plans:
            continue
        classes = [str(c.get("architecture", {}).get("network_class_name", ""))
                   for c in plans["configurations"].values() if isinstance(c, dict)]
        if any(c.startswith(NETWORK_MARKER) for c in classes):
            name = os.path.splitext(os.path.basename(path))[0]
            found.append(name)
            cpu_preset[name] = (plans.get("vertebraformer") or {}).get("preset") == "cpu"
    if not found:
        raise SystemExit(f"vertebraformer train: no VertebraFormer plans in {preprocessed_dataset_folder}; run "
                         "`vertebraformer plan-and-preprocess` first, or name the plans with -p")
    if len(found) > 1 and device is not None:
        matching = [n for n in found if cpu_preset[n] == (device == "cpu")]
        if len(matching) == 1:
            return matching[0]
    if len(found) > 1:
        raise SystemExit(f"vertebraformer train: several VertebraFormer plans in {preprocessed_dataset_folder}: "
                         f"{', '.join(found)}; choose one with -p")
    return found[0]


def ensure_shim_on_ext_trainer() -> None:
    from . import shim_folder

    folder = shim_folder()
    current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if folder not in current:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join(current + [folder])


def preprocessed_folder(dataset: str) -> str:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` of a dataset id or name (nnU-Net's folders set up, our shim folder on
    ``nnUNet_extTrainer`` for this process and its children)."""
    from vertebraformer_nn.paths import ensure_env

    ensure_env()
    ensure_shim_on_ext_trainer()
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(int(dataset) if str(dataset).isdigit() else dataset)
    return os.path.join(str(nnUNet_preprocessed), name)


def build_trainer(dataset: str, fold, configuration: str = "3d_fullres", trainer: str = DEFAULT_TRAINER,
                  plans_identifier: Optional[str] = None, device: Optional[str] = None,
                  continue_training: bool = False):
    """The trainer instance, as ``vertebraformer train`` builds it (no checkpoint loaded yet)."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import join, load_json

    from .folds import check_fold, read_splits
    from .registry import UnknownTrainerError, resolve_trainer_class

    base = preprocessed_folder(dataset)
    fold = fold if fold == "all" else int(fold)
    check_fold(fold, read_splits(base))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    plans_identifier = plans_identifier or find_plans(base, device)
    plans = load_json(join(base, plans_identifier + ".json"))
    if configuration not in plans.get("configurations", {}):
        raise SystemExit(f"vertebraformer train: configuration {configuration!r} is not in {plans_identifier} "
                         f"(has {', '.join(plans.get('configurations', {}))})")
    plans["continue_training"] = bool(continue_training)
    dataset_json = load_json(join(base, "dataset.json"))
    try:
        cls = resolve_trainer_class(trainer)
    except UnknownTrainerError as e:
        raise SystemExit(f"vertebraformer train: {e}") from None
    return cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
               device=torch.device(device))
