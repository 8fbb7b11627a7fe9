"""The cross-validation cases a model's post-processing is chosen on: each fold's validation cases, predicted by that
fold's network, with their references, all on the model grid.

As nnU-Net's own final validation (``nnUNetTrainer.perform_actual_validation``) does, a fold's validation cases are
read from the preprocessed dataset (``$nnUNet_preprocessed/<dataset>/<data_identifier>/``): the image exactly as
training saw it, and the reference on the same grid (seg channel 0: training labels, nnU-Net's ignore label on
vertebrae cut by the field of view; channel 1: the lesion map, meaningful where ``has_lesion_annotation``). The
predictor (``predictor.VertebraFormerPredictor``, the fold's checkpoint only) gives every head's probabilities,
compacted as ``predict --save_probabilities`` stores them, saved as ``fold_<f>/validation/<case>_vfprobs.npz`` beside
nnU-Net's validation outputs and reused while the checkpoint is unchanged (its size and time are recorded).

When the sibling coarse model (``<Trainer>__<Plans>__3d_lowres``, ``coarse_stage``) has the fold, its level
probabilities of each case, predicted from the coarse configuration's preprocessed data, are saved with the others
(head ``coarse_id``, whole on the coarse grid), as ``predict`` computes them; the CT in HU on the model grid (for
the anatomical anchors and the lesion candidates' CT judging) is read as ``predict`` reads it: the raw training image
(``$nnUNet_raw/<dataset>/imagesTr/<case>_0000<file_ending>``), its voxel nearest to each model voxel along the same
map back (``grid_map.GridMap``, ``model_grid_hu.from_input``), so implants keep their HU; where the raw image is not
there, the preprocessed image with nnU-Net's CT normalisation undone (``model_grid_hu.from_preprocessed``: clipped to
the plans' CT window, whose top, the 99.5th percentile of the vertebrae, lies below the metal rule's
``lesion_contrast.METAL_HU``), with a line in the log.

Only cross-validation folds qualify: a leave-one-domain-out fold's validation cases are the held-out domain's test
cases, which must not choose anything (as ``checkpoint_best`` is not chosen on them either).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import labels
from ..geometry import front_axis_after_transpose, lateral_axis_after_transpose
from . import probabilities as P
from .ct_discs import InputCT
from .grid_probabilities import COARSE_HEAD
from .model_grid_hu import from_input, from_preprocessed

__all__ = ["ValidationCase", "validation_folds", "collect_validation_cases", "load_probabilities", "iterate",
           "whole_vertebrae"]


@dataclass
class ValidationCase:
    """One validation case on the model grid."""

    name: str
    fold: int
    probabilities: Path  # <case>_vfprobs.npz
    reference: np.ndarray  # VerSe codes, 0 on background and on the ignore region
    ignore: np.ndarray  # bool: the ignore region (vertebrae cut by the field of view)
    lesions: Optional[np.ndarray]  # bool reference lesion map, None when the case annotates no lesions
    spacing: Tuple[float, float, float]  # mm per model axis
    superior: Tuple[int, int]  # (model axis, sign) the numbering orders along (export.numbering_axis)
    hu: Optional[np.ndarray] = None  # int16 CT in HU on the model grid (anchors), None when it cannot be recovered
    lateral: Optional[int] = None  # model axis closest to left-right (the spine's axis near the body's midline)
    ct: Optional[InputCT] = None  # the raw image around the spine, for the discs it shows (ct_discs)


def _preprocessed_base(model_folder: Path) -> Path:
    from ..paths import ensure_env

    ensure_env()
    from nnunetv2.paths import nnUNet_preprocessed

    return Path(str(nnUNet_preprocessed)) / model_folder.parent.name


def validation_folds(model_folder: Path, folds: Sequence[int]) -> Dict[int, List[str]]:
    """{fold: validation case names} from the preprocessed dataset's ``splits_final.json``; ValueError for a fold
    it lacks or one that holds a domain out."""
    path = _preprocessed_base(model_folder) / "splits_final.json"
    try:
        splits = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the splits the model was trained on ({e}); post-processing is "
                         "chosen on the machine that has the preprocessed dataset") from None
    out = {}
    for fold in folds:
        if not 0 <= int(fold) < len(splits):
            raise ValueError(f"{path}: no fold {fold} (the file has folds 0-{len(splits) - 1})")
        entry = splits[int(fold)]
        if entry.get("held_out_domain"):
            raise ValueError(f"fold {fold} holds the {entry['held_out_domain']} domain out: its validation cases are "
                             "that domain's test cases and choose nothing; use cross-validation folds (0-4)")
        out[int(fold)] = list(entry["val"])
    return out


def _checkpoint_id(path: Path) -> dict:
    stat = path.stat()
    return {"checkpoint": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _reference(seg: np.ndarray, dataset_json: dict, case: str):
    """(VerSe codes, ignore mask) of a preprocessed seg channel 0 (training labels; -1 outside the image's
    nonzero region is background)."""
    from ..evaluation.references import code_lut, ignore_label, reference_codes

    training = np.where(seg < 0, 0, seg).astype(np.int16)
    return reference_codes(training, code_lut(dataset_json, Path("dataset.json")), ignore_label(dataset_json),
                           Path(f"{case} (preprocessed)"))


def collect_validation_cases(model_folder, folds: Sequence[int], *, device: Optional[str] = None,
                             checkpoint: str = "checkpoint_final.pth", recompute: bool = False,
                             log: Callable[[str], None] = print) -> List[ValidationCase]:
    """Every validation case of ``folds`` (module docstring), probabilities predicted or reused."""
    import torch
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from ..case_facts import from_properties
    from ..planners.preprocessor import LESION_CHANNEL
    from ..plans_facts import anatomical_axes
    from .export import model_spacing, numbering_axis
    from .predictor import VertebraFormerPredictor, checkpoint_files

    model_folder = Path(model_folder)
    per_fold = validation_folds(model_folder, folds)
    checkpoint_files(model_folder, list(per_fold), checkpoint)  # a clear error for a missing fold first
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dataset_json = json.loads((model_folder / "dataset.json").read_text())
    cases = []
    for fold, names in per_fold.items():
        predictor = VertebraFormerPredictor(device)
        predictor.initialize_from_trained_model_folder(model_folder, [fold], checkpoint)
        plans, tf = predictor.plans_manager.plans, predictor.plans_manager.transpose_forward
        dataset = _dataset(model_folder, predictor, names, infer_dataset_class)
        identity = _checkpoint_id(model_folder / f"fold_{fold}" / checkpoint)
        coarse, coarse_data = _coarse_stage(model_folder, fold, checkpoint, device, names, infer_dataset_class, log)
        identity["coarse"] = None if coarse is None else _checkpoint_id(coarse.folder / f"fold_{fold}" / checkpoint)
        out = model_folder / f"fold_{fold}" / "validation"
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            data, seg, _, properties = dataset.load_case(name)
            seg = np.asarray(seg[:])
            shape = tuple(int(s) for s in seg.shape[1:])
            path = P.probabilities_file(out, name)
            if recompute or not _reusable(path, identity, shape):
                probs = predictor.predict_probabilities(torch.from_numpy(np.asarray(data[:])), keep=path)
                if coarse is not None:
                    coarse_image, _, _, coarse_properties = coarse_data.load_case(name)
                    probs.attach_coarse(lambda: coarse.from_preprocessed(np.asarray(coarse_image[:]),
                                                                         coarse_properties, properties))
                P.save(path, probs, {"case": name, "fold": fold, **identity})
                log(f"  fold {fold}: {name} predicted")
            else:
                log(f"  fold {fold}: {name} reused ({path.name})")
            hu, ct, why = _raw_hu(model_folder, name, dataset_json, properties, shape, plans, tf, seg[0])
            if hu is None:
                log(f"  fold {fold}: {name}: {why}; its HU from the preprocessed image, clipped to the CT window "
                    "(no implant reads as metal)")
                hu = from_preprocessed(np.asarray(data[:]), plans, predictor.configuration)
            reference, ignore = _reference(seg[0], dataset_json, name)
            axis, sign, _ = numbering_axis(properties["sitk_stuff"]["direction"], tf, anatomical_axes(plans)["si"])
            facts = from_properties(properties)
            annotated = facts is not None and facts.lesion_annotated and seg.shape[0] > LESION_CHANNEL
            cases.append(ValidationCase(name, fold, path, reference, ignore,
                                        seg[LESION_CHANNEL] > 0 if annotated else None,
                                        tuple(model_spacing(properties, shape, tf)), (axis, sign),
                                        None if hu is None else np.clip(np.rint(hu), -32768, 32767).astype(np.int16),
                                        lateral_axis_after_transpose(properties["sitk_stuff"]["direction"], tf), ct))
        del predictor
    return cases


def _raw_hu(model_folder: Path, name: str, dataset_json: dict, properties: dict, model_shape, plans: dict,
            transpose_forward, training_labels: np.ndarray) -> Tuple[Optional[np.ndarray], Optional[InputCT], str]:
    """(the CT in HU on the model grid from the raw training image, sampled as ``predict`` samples its input (module
    docstring), or None; the raw image around the labelled spine (``training_labels`` on the model grid, widened by
    :data:`CT_MARGIN_MM`) as ``ct_discs`` reads it, or None; why None)."""
    import SimpleITK as sitk

    from ..image_io import read_image
    from ..paths import raw_root
    from .cases import NNUNET_CHANNEL_SUFFIX, SUPPORTED_READERS, reorientation
    from .grid_map import GridMap

    image_name = f"{name}{NNUNET_CHANNEL_SUFFIX}{dataset_json['file_ending']}"
    path = raw_root() / model_folder.parent.name / "imagesTr" / image_name
    reader = plans.get("image_reader_writer")
    if reader not in SUPPORTED_READERS:
        return None, None, f"the plans' reader {reader!r} is not one predict supports"
    if not path.is_file():
        return None, None, f"no raw image {path}"
    try:  # a raw image replaced since preprocessing no longer fits the grid: ValueError
        image = read_image(path)
        reo, _ = reorientation(image, SUPPORTED_READERS[reader])
        grid = GridMap.from_properties(properties, model_shape, transpose_forward, reo)
        array = sitk.GetArrayViewFromImage(image)
        return from_input(array, grid), _spine_ct(array, image, grid, properties, model_shape, transpose_forward,
                                                  training_labels), ""
    except ValueError as e:
        return None, None, f"{path}: {e}"


#: the raw image kept for a validation case reaches this far (mm) beyond its labelled vertebrae
CT_MARGIN_MM = 40.0


def _spine_ct(array, image, grid, properties: dict, model_shape, transpose_forward,
              training_labels: np.ndarray) -> Optional[InputCT]:
    """The raw image around the labelled spine as ``ct_discs`` reads it (``export`` builds the same for ``predict``);
    None without labels."""
    from .export import model_spacing
    from .instances import occupied_box

    box = occupied_box(np.asarray(training_labels) > 0)
    if box is None:
        return None
    spacing = model_spacing(properties, model_shape, transpose_forward)
    margin = [int(np.ceil(CT_MARGIN_MM / s)) for s in spacing]
    window = grid.input_window([(max(0, b.start - m), min(n, b.stop + m))
                                for b, m, n in zip(box, margin, model_shape)])
    if window is None:
        return None
    front = front_axis_after_transpose(properties["sitk_stuff"]["direction"], transpose_forward)
    return InputCT.from_grid(array, image.GetSpacing()[::-1], grid, spacing, front).cropped(window)


def _dataset(model_folder: Path, predictor, names: Sequence[str], infer_dataset_class):
    """nnU-Net's dataset of ``names`` in the predictor's configuration's preprocessed folder (a clear error for a
    case that is not there)."""
    data_folder = _preprocessed_base(model_folder) / predictor.configuration_manager.data_identifier
    missing = [n for n in names if not any(data_folder.glob(f"{n}.*"))]
    if missing:
        raise ValueError(f"{data_folder}: no preprocessed data of validation case(s) {', '.join(missing)} "
                         "(post-processing is chosen where the model's preprocessed dataset is)")
    return infer_dataset_class(str(data_folder))(str(data_folder), names)


def _coarse_stage(model_folder: Path, fold: int, checkpoint: str, device, names, infer_dataset_class, log):
    """(the coarse stage of this fold, its preprocessed dataset), or (None, None) when the model has none."""
    from .coarse_stage import CoarseStage, find_coarse_model

    folder, _, note = find_coarse_model(model_folder, [fold], checkpoint)
    log(f"  fold {fold}: {note}")
    if folder is None:
        return None, None
    stage = CoarseStage.load(folder, [fold], checkpoint, device)
    return stage, _dataset(folder, stage.predictor, names, infer_dataset_class)


def _reusable(path: Path, identity: dict, shape: Tuple[int, ...]) -> bool:
    """Saved probabilities of this checkpoint on this grid."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            meta, saved_shape = json.loads(str(f["meta"])), tuple(int(s) for s in f["shape"])
    except (OSError, KeyError, ValueError):
        return False
    return saved_shape == shape and all(meta.get(k) == v for k, v in identity.items())


def load_probabilities(case: ValidationCase) -> Dict[str, np.ndarray]:
    """head -> (C, X, Y, Z) float16 probabilities of a validation case (``coarse_id``, when there, on its own
    grid)."""
    compact, _ = P.load(case.probabilities)
    out = {head: compact.expand(head) for head in compact.heads}
    if compact.coarse is not None:
        out[COARSE_HEAD] = compact.coarse
    return out


def iterate(cases: Sequence[ValidationCase]) -> Iterator[Tuple[ValidationCase, Dict[str, np.ndarray]]]:
    """Each case with its probabilities, one case in memory at a time."""
    for case in cases:
        yield case, load_probabilities(case)


def whole_vertebrae(case: ValidationCase) -> int:
    """Number of whole reference vertebrae (what the identification rate counts)."""
    return int(np.count_nonzero(np.bincount(case.reference.ravel(), minlength=max(labels.VERTEBRA_CODES) + 1)[1:]))
