"""``vertebraformer predict``: nnU-Net's predictor for every dense head of VertebraFormer.

:class:`VertebraFormerPredictor` is an ``nnUNetPredictor``: nnU-Net's sliding window, Gaussian weighting and
test-time mirroring run unchanged. What differs:

* the model folder is read by us: weights with ``torch.load(weights_only=True)`` (``load_checkpoint_file``), the
  trainer class from ``vertebraformer_nn.trainers`` (nnU-Net's search by name does not see external packages;
  its search is only the fallback for stock trainers), every requested fold must have its checkpoint (a clear
  error otherwise; never "every fold found": folds 5 and up are cross-domain runs);
* the network runs in its "dense" output mode (segmentation, identification and lesion channels concatenated)
  (the label manager reports that many channels, so nnU-Net's own sliding window would allocate all of them);
* the sliding window's aggregation is ours (``sliding_window``, ``tiles``): nnU-Net's tile positions and Gaussian
  weights, every fold per tile, probabilities (not logits) averaged over tiles and folds (the rule of
  ``vertebraformer ensemble`` too, ``probabilities``), memory that follows the spine: the result is a
  ``grid_probabilities.GridProbabilities``, 5 bytes per model-grid voxel plus the spine's level probabilities;
* on the CPU: test-time mirroring (left-right only, the one axis the trainer allows) is off unless asked for, and
  the network runs under bf16 autocast where the CPU has bf16 instructions, unless ``bf16=False`` (see
  ``BF16_DEFAULT``);
* inputs: files and DICOM series through ``image_io`` (``cases.read_case``), turned into exactly what nnU-Net's
  reader would give (``cases.nnunet_input``), then nnU-Net's own preprocessing (``run_case_npy``);
* export at the model's spacing and back to the input grid without nnU-Net's per-class float32 resampling
  (``export``); the numbering orders vertebrae along the model's head-foot axis, a fact of its plans
  (``plans_facts.anatomical_axes``; ``export.numbering_axis`` says what happens when a case disagrees);
* with a coarse whole-field stage attached (``coarse_stage``, the sibling ``3d_lowres`` model), its level
  probabilities on its own grid become the head ``coarse_id`` of every case (``GridProbabilities.coarse``).

The folder loop around it is ``runner.run_cases``.
"""
from __future__ import annotations

import io
import time
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from ..plans_facts import PlansFactError, anatomical_axes
from . import probabilities as P
from .cases import Case, check_ct, nnunet_input, read_case
from .export import case_meta
from .sliding_window import predict_grid

__all__ = ["ModelError", "DEFAULT_FOLDS", "BF16_DEFAULT", "resolve_model_folder", "checkpoint_files",
           "VertebraFormerPredictor"]

DEFAULT_FOLDS = (0, 1, 2, 3, 4)
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
#: bf16 autocast on the CPU by default where the CPU runs bf16 natively (``precision.cpu_bf16_enabled``: the
#: training's rule too; ``VERTEBRAFORMER_CPU_BF16=0`` or ``--fp32`` turn it off). Measured against fp32, final
#: label maps on the input grid, partly trained CPU-preset model (CPU20min schedule, epoch 17): 99.990-99.999 % of
#: voxels agree (98.6-99.7 % of the voxels either calls spine), the same levels found, identical lesion masks, on
#: a phantom, the real example_ct, the real DICOM series and a 512 x 512 x 600 CT; the network stage took 0.66x
#: the time on that CT. With the tiny test model see ``test_bf16_labels_agree_with_fp32``.
BF16_DEFAULT = True


class ModelError(ValueError):
    """The model folder, its folds or checkpoints cannot be used."""


# ------------------------------------------------------------------------------------------------ model folder
def resolve_model_folder(model: Optional[str] = None, dataset: Optional[str] = None,
                         configuration: str = "3d_fullres", trainer: Optional[str] = None,
                         plans: Optional[str] = None) -> Path:
    """The trained model folder: ``model`` itself, or ``$nnUNet_results/DatasetXXX/<trainer>__<plans>__<config>``.
    Without ``trainer``/``plans``, the one folder of that configuration there (an error lists several)."""
    if model is not None:
        folder = Path(model)
        if not (folder / "plans.json").is_file() or not (folder / "dataset.json").is_file():
            raise ModelError(f"{folder}: not a trained model folder (needs plans.json, dataset.json and fold_<f>/)")
        return folder
    if dataset is None:
        raise ModelError("name the model: -m MODEL_FOLDER, or -d DATASET [-c CONFIG] [-tr TRAINER] [-p PLANS]")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from ..paths import results_root

    root = results_root()
    try:
        name = maybe_convert_to_dataset_name(int(dataset) if str(dataset).isdigit() else dataset)
    except RuntimeError as e:
        raise ModelError(f"dataset {dataset}: {e}") from None
    base = root / name
    pattern = f"{trainer or '*'}__{plans or '*'}__{configuration}"
    found = sorted(p for p in base.glob(pattern) if (p / "plans.json").is_file())
    if len(found) == 1:
        return found[0]
    known = ", ".join(p.name for p in sorted(base.glob("*__*__*"))) or "none"
    if not found:
        raise ModelError(f"no trained model {pattern} in {base} (model folders there: {known})")
    raise ModelError(f"several trained models match {pattern} in {base}: {known}; choose one with -tr and -p")


def checkpoint_files(model_folder: Path, folds: Sequence, checkpoint: str = DEFAULT_CHECKPOINT) -> List[Path]:
    """fold_<f>/<checkpoint> of every requested fold; a ModelError naming the missing ones."""
    if not folds:
        raise ModelError("no folds requested")
    folds = [f if str(f) == "all" else int(f) for f in folds]
    paths = [Path(model_folder) / f"fold_{f}" / checkpoint for f in folds]
    missing = [str(f) for f, p in zip(folds, paths) if not p.is_file()]
    if missing:
        present = sorted(p.parent.name for p in Path(model_folder).glob(f"fold_*/{checkpoint}"))
        raise ModelError(f"{model_folder}: fold(s) {', '.join(missing)} have no {checkpoint} (folds with one: "
                         f"{', '.join(present) or 'none'}); choose folds with -f (default {' '.join(map(str, DEFAULT_FOLDS))})")
    return paths


def _resolve_trainer_class(name: str):
    from ..trainers.registry import UnknownTrainerError, resolve_trainer_class

    try:
        return resolve_trainer_class(name)
    except UnknownTrainerError as e:
        raise ModelError(f"the checkpoint names a trainer that cannot be found: {e}") from None


def _plain_state(state: dict) -> dict:
    """Weights saved from a DDP (``module.``) or compiled (``_orig_mod.``) wrapper, with plain keys."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


class DenseOutput(nn.Module):
    """The network as nnU-Net's sliding window sees it: one float32 tensor of every dense head (VertebraFormer's
    "dense" mode; another network's plain output), under bf16 autocast on the CPU when asked."""

    def __init__(self, net: nn.Module, num_seg_channels: int, bf16: bool = False):
        super().__init__()
        from ..network import VertebraFormer

        self.net = net
        self.bf16 = bf16
        self.dense = isinstance(net, VertebraFormer)
        self.layout: Dict[str, Tuple[int, int]] = dict(net.dense_layout()) if self.dense else {
            "seg": (0, num_seg_channels)}
        self.num_channels = max(stop for _, stop in self.layout.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 and x.device.type == "cpu" \
            else nullcontext()
        with autocast:
            out = self.net(x, heads="dense") if self.dense else self.net(x)
        return out.float()


class _DenseChannels:
    """nnU-Net's label manager, reporting every dense channel so the sliding window allocates them all."""

    def __init__(self, label_manager, num_channels: int):
        self._label_manager = label_manager
        self.num_segmentation_heads = num_channels

    def __getattr__(self, name):
        return getattr(self._label_manager, name)


# ------------------------------------------------------------------------------------------------ predictor
class VertebraFormerPredictor(nnUNetPredictor):
    """See the module docstring. ``use_mirroring`` None = on for a GPU, off on the CPU; ``bf16`` None =
    ``BF16_DEFAULT`` on the CPU (it only applies there; nnU-Net uses fp16 autocast on CUDA itself)."""

    def __init__(self, device="cpu", use_mirroring: Optional[bool] = None, bf16: Optional[bool] = None,
                 tile_step_size: float = 0.5, verbose: bool = False):
        device = torch.device(device)
        if use_mirroring is None:
            use_mirroring = device.type != "cpu"
        with redirect_stdout(io.StringIO()):  # nnU-Net prints a warning for every non-CUDA device
            super().__init__(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=bool(use_mirroring),
                             perform_everything_on_device=device.type == "cuda", device=device, verbose=verbose,
                             verbose_preprocessing=False, allow_tqdm=False)
        if bf16 is None:
            from ..precision import cpu_bf16_enabled

            bf16 = BF16_DEFAULT and cpu_bf16_enabled()
        self.bf16 = bool(bf16) and device.type == "cpu"
        self.model_folder: Optional[Path] = None
        self.plans_axis: Optional[int] = None  # the model's head-foot array axis (plans_facts)
        self.configuration: Optional[str] = None
        self.folds: List = []
        self.checkpoint_name = DEFAULT_CHECKPOINT
        self.last_run: dict = {}  # where the last sliding window kept its sums, their peak bytes (sliding_window)
        self.coarse_stage = None  # coarse_stage.CoarseStage, attached by predict_folder

    # ---------------------------------------------------------------- loading
    def initialize_from_trained_model_folder(self, model_training_output_dir, use_folds=DEFAULT_FOLDS,
                                             checkpoint_name: str = DEFAULT_CHECKPOINT):
        from batchgenerators.utilities.file_and_folder_operations import load_json
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from ..trainers.checkpoints import load_checkpoint_file

        folder = Path(model_training_output_dir)
        paths = checkpoint_files(folder, use_folds if use_folds is not None else DEFAULT_FOLDS, checkpoint_name)
        dataset_json = load_json(str(folder / "dataset.json"))
        plans_manager = PlansManager(load_json(str(folder / "plans.json")))
        parameters, trainer_name, configuration, mirror_axes = [], None, None, None
        for path in paths:
            try:
                checkpoint = load_checkpoint_file(str(path), map_location=torch.device("cpu"))
            except Exception as e:  # unpickling refused, truncated file, ...
                raise ModelError(f"{path}: cannot load the checkpoint with weights_only=True ({e})") from None
            if trainer_name is None:
                trainer_name = checkpoint["trainer_name"]
                configuration = checkpoint["init_args"]["configuration"]
                mirror_axes = checkpoint.get("inference_allowed_mirroring_axes")
            elif (checkpoint["trainer_name"], checkpoint["init_args"]["configuration"]) != (trainer_name, configuration):
                raise ModelError(f"{path}: trained by {checkpoint['trainer_name']} ({checkpoint['init_args']['configuration']}), "
                                 f"unlike {paths[0]} ({trainer_name}, {configuration}); folds must come from one model")
            parameters.append(_plain_state(checkpoint["network_weights"]))
        configuration_manager = plans_manager.get_configuration(configuration)
        label_manager = plans_manager.get_label_manager(dataset_json)
        try:
            plans_axis = anatomical_axes(plans_manager.plans)["si"]
        except PlansFactError as e:
            raise ModelError(f"{folder / 'plans.json'}: {e}") from None
        trainer_class = _resolve_trainer_class(trainer_name)
        network = trainer_class.build_network_architecture(
            plans_manager, configuration_manager,
            determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
            label_manager.num_segmentation_heads, enable_deep_supervision=False)
        try:
            network.load_state_dict(parameters[0])
        except RuntimeError as e:
            raise ModelError(f"{paths[0]}: weights do not fit the network the plans describe ({e})") from None
        wrapped = DenseOutput(network, label_manager.num_segmentation_heads, self.bf16)

        self.plans_manager, self.configuration_manager = plans_manager, configuration_manager
        self.list_of_parameters = parameters
        self.network = wrapped
        self.dataset_json = dataset_json
        self.trainer_name = trainer_name
        self.allowed_mirroring_axes = tuple(mirror_axes) if mirror_axes is not None else None
        self.label_manager = _DenseChannels(label_manager, wrapped.num_channels)
        self.model_folder = folder
        self.plans_axis = plans_axis
        self.configuration = configuration
        self.folds = [f if str(f) == "all" else int(f) for f in use_folds]
        self.checkpoint_name = checkpoint_name

    @property
    def layout(self) -> Dict[str, Tuple[int, int]]:
        return self.network.layout

    def describe(self) -> dict:
        """Provenance kept with every case's probabilities and in the run's arguments file."""
        return {"model": str(self.model_folder), "trainer": self.trainer_name,
                "plans": self.plans_manager.plans_name, "configuration": self.configuration,
                "folds": self.folds, "checkpoint": self.checkpoint_name, "device": str(self.device),
                "tta_mirroring": bool(self.use_mirroring and self.allowed_mirroring_axes),
                "mirror_axes": list(self.allowed_mirroring_axes or []), "bf16": self.bf16,
                "tile_step_size": self.tile_step_size, "heads": list(self.layout),
                "coarse": self.coarse_stage.describe() if self.coarse_stage is not None else None}

    # ---------------------------------------------------------------- one case
    def preprocess(self, data, properties: dict) -> Tuple[torch.Tensor, dict]:
        """nnU-Net's own preprocessing (transpose, crop, CT normalisation, resampling) with the model's plans.
        ``data`` may be a one-item list: the array is then handed over (nnU-Net's preprocessor starts with a
        float32 copy of its input; handed over, the original goes as soon as the copy exists: 600 MB less at the
        peak for a 512 x 512 x 600 CT)."""
        preprocessor = self.configuration_manager.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case_npy(data.pop() if isinstance(data, list) else data, None,
                                                        properties, self.plans_manager, self.configuration_manager,
                                                        self.dataset_json)
        return torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format), properties

    def predict_probabilities(self, data: torch.Tensor, keep=None):
        """Every fold's sliding window over one preprocessed image (1, X, Y, Z): a
        ``grid_probabilities.GridProbabilities`` of the model grid (``sliding_window.predict_grid``). ``keep``:
        where to collect what ``--save_probabilities`` saves (``probabilities.save`` writes it): the probabilities
        file's path (its temporary rows go beside it), True (a temporary folder), or None (nothing kept)."""
        writer = None
        if keep is not None and keep is not False:
            heads = {h: stop - start for h, (start, stop) in self.layout.items()}
            folder, prefix = (None, "vfprobs") if keep is True else (Path(keep).parent, Path(keep).name)
            writer = P.KeptWriter(data.shape[1:], heads, folder, prefix)
        try:
            return predict_grid(self, data, writer)
        except BaseException:
            if writer is not None:
                writer.discard()
            raise

    def predict_case(self, case: Case, seconds: Dict[str, float], keep=None):
        """(CT image, probabilities, meta) of one case; ``seconds`` gets read / preprocess / network times; ``keep``
        as :meth:`predict_probabilities`. Raises CaseError for an input that cannot be predicted."""
        t = time.perf_counter()
        image = read_case(case)
        check_ct(image, case.source)
        seconds["read"] = time.perf_counter() - t

        t = time.perf_counter()
        holder = [None]
        holder[0], properties, reorientation = nnunet_input(image, self.plans_manager.plans["image_reader_writer"])
        data, properties = self.preprocess(holder, properties)  # hands the array over
        seconds["preprocess"] = time.perf_counter() - t

        t = time.perf_counter()
        shape = tuple(data.shape[1:])
        probs = self.predict_probabilities(data, keep)
        del data
        if self.coarse_stage is not None:  # its time counts as network time
            probs.attach_coarse(lambda: self.coarse_stage.level_probabilities(image, properties))
        seconds["network"] = time.perf_counter() - t
        meta = case_meta(case.name, case.source, case.kind, image, properties, shape,
                         self.plans_manager.transpose_forward, reorientation, self.plans_axis,
                         prediction=self.describe(),
                         resampling=dict(self.configuration_manager.configuration.get(
                             "resampling_fn_probabilities_kwargs") or {}))
        return image, probs, meta
