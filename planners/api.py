"""``plan_and_preprocess``: fingerprint (nnU-Net's), plans (ours), preprocessing (ours) for one dataset."""
from __future__ import annotations

import os
import shutil
import time
from typing import Optional, Sequence

from .presets import COARSE_CONFIGURATION, CONFIGURATION


def planner_class(preset: Optional[str]):
    """The planner class of a preset (None = GPU, sized by gpu_memory_gb)."""
    from .planner import VertebraFormerCPUPlanner, VertebraFormerPlanner

    if preset is None or preset == "gpu":
        return VertebraFormerPlanner
    if preset == "cpu":
        return VertebraFormerCPUPlanner
    raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or give gpu_memory_gb")


def plan_and_preprocess(dataset_id: int, preset: Optional[str] = None, gpu_memory_gb: float = 24,
                        configurations: Sequence[str] = (CONFIGURATION, COARSE_CONFIGURATION), num_processes: int = 2,
                        verify: bool = False, clean: bool = False, plans_name: Optional[str] = None,
                        verbose: bool = True, disc_head: bool = False) -> str:
    """Plan and preprocess ``Dataset<dataset_id>_*`` from ``$nnUNet_raw`` into ``$nnUNet_preprocessed``.

    * fingerprint: nnU-Net's ``DatasetFingerprintExtractor`` (reused when present and not older than the raw
      dataset.json nor of another case count, unless ``clean``);
      ``verify`` runs nnU-Net's dataset integrity check first;
    * plans: :class:`VertebraFormerPlanner` (``preset=None``, sized for ``gpu_memory_gb``) or
      :class:`VertebraFormerCPUPlanner` (``preset="cpu"``), written to ``<plans>.json``; ``disc_head`` gives the
      fine configuration the disc head (``VertebraFormerPlanner.disc_head``, off by default);
    * preprocessing: :class:`VertebraFormerPreprocessor` into ``<plans>_3d_fullres/`` and, for the coarse
      whole-field stage, ``<plans>_3d_lowres/`` (``configurations``; 2-channel seg files),
      ``labelsTr`` copied to ``gt_segmentations/``, ``splits_final.json`` copied from the raw folder when the
      preprocessed folder has none.

    Returns the plans identifier (``VertebraFormerPlans`` / ``VertebraFormerCPUPlans`` unless ``plans_name``).
    Uses spawn pools: call it under an ``if __name__ == "__main__":`` guard from a script.
    """
    from ..paths import ensure_env

    ensure_env()
    from batchgenerators.utilities.file_and_folder_operations import join, load_json, maybe_mkdir_p
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    from .preprocessor import VertebraFormerPreprocessor

    configurations = list(configurations)
    bad = [c for c in configurations if c not in (CONFIGURATION, COARSE_CONFIGURATION)]
    if bad:
        raise ValueError(f"VertebraFormer plans {CONFIGURATION!r} and {COARSE_CONFIGURATION!r} (a 3D network); "
                         f"not {', '.join(bad)}")
    cls = planner_class(preset)
    dataset_name = maybe_convert_to_dataset_name(int(dataset_id))
    t0 = time.time()

    fingerprint = join(nnUNet_preprocessed, dataset_name, "dataset_fingerprint.json")
    if clean or verify or _fingerprint_is_stale(fingerprint, join(nnUNet_raw, dataset_name, "dataset.json")):
        extract_fingerprint_dataset(int(dataset_id), DatasetFingerprintExtractor, num_processes=num_processes,
                                    check_dataset_integrity=verify, clean=True, verbose=False,
                                    show_progress_bar=verbose)
    t1 = time.time()

    # splits: the planner's constructor copies (and checks) them too; do it here so it never depends on that
    raw_splits = join(nnUNet_raw, dataset_name, "splits_final.json")
    pp_splits = join(nnUNet_preprocessed, dataset_name, "splits_final.json")
    if os.path.isfile(raw_splits) and not os.path.isfile(pp_splits):
        shutil.copy(raw_splits, pp_splits)

    kwargs = {} if preset == "cpu" else {"gpu_memory_target_in_gb": float(gpu_memory_gb)}
    planner = cls(int(dataset_id), plans_name=plans_name, verbose=verbose, **kwargs)
    planner.disc_head = bool(disc_head)
    planner.plan_experiment()
    plans_identifier = planner.plans_identifier
    t2 = time.time()

    preprocessor = VertebraFormerPreprocessor(verbose=False)
    preprocessor.show_progress_bar = verbose
    planned = planner.plans["configurations"]
    for c in configurations:
        if c not in planned:  # 3d_lowres is not planned when it would be no coarser than 3d_fullres
            print(f"plan-and-preprocess: {c} not planned for {dataset_name}; not preprocessed")
            continue
        preprocessor.run(int(dataset_id), c, plans_identifier, num_processes=num_processes)

    # nnU-Net's preprocess_dataset copies the ground truth for validation; so do we
    gt_folder = join(nnUNet_preprocessed, dataset_name, "gt_segmentations")
    maybe_mkdir_p(gt_folder)
    dataset_json = load_json(join(nnUNet_raw, dataset_name, "dataset.json"))
    dataset = get_filenames_of_train_images_and_targets(join(nnUNet_raw, dataset_name), dataset_json)
    for case, entry in dataset.items():
        shutil.copyfile(entry["label"], join(gt_folder, case + dataset_json["file_ending"]))
    t3 = time.time()
    if verbose:
        print(f"plan-and-preprocess {dataset_name}: fingerprint {t1 - t0:.1f} s, plans {t2 - t1:.1f} s, "
              f"preprocessing {t3 - t2:.1f} s -> {join(nnUNet_preprocessed, dataset_name)} "
              f"(plans '{plans_identifier}', data "
              f"{', '.join(repr(f'{plans_identifier}_{c}') for c in configurations if c in planned)})")
    return plans_identifier


def _fingerprint_is_stale(fingerprint: str, raw_dataset_json: str) -> bool:
    """True when the fingerprint is missing, older than the raw dataset.json (re-finalized since) or counts
    another number of training cases."""
    import json

    if not os.path.isfile(fingerprint):
        return True
    if os.path.getmtime(raw_dataset_json) > os.path.getmtime(fingerprint):
        return True
    try:
        with open(fingerprint) as f:
            n_fp = len(json.load(f)["spacings"])
        with open(raw_dataset_json) as f:
            n_raw = int(json.load(f)["numTraining"])
    except (OSError, ValueError, KeyError):
        return True
    return n_fp != n_raw
