"""Checkpoint I/O of the VertebraFormer trainers.

* Checkpoints are nnU-Net's (``nnUNetTrainer.save_checkpoint``): the trainer's logger stores plain Python floats
  (``progress.MultiTaskLocalLogger``), so they load with ``torch.load(weights_only=True)``, no pickled code.
* A leave-one-domain-out fold validates on its held-out domain, so a ``checkpoint_best`` would be chosen on test
  data: :class:`CheckpointMixin` declines to write it there, and ``checkpoint_final`` is the model.
* ``load_checkpoint`` accepts a path or a dict and loads with ``weights_only=True``: nnU-Net 2.8.1's raises a
  NameError on a dict and loads with ``weights_only=False`` (its warm-up trainer not even that, on torch >= 2.6).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch._dynamo import OptimizedModule

from .environment import positive_from_env

BEST = "checkpoint_best.pth"
#: overrides the trainer's PRETRAINED_LR_FACTOR (a positive number)
LR_FACTOR_ENV = "VERTEBRAFORMER_PRETRAINED_LR_FACTOR"


# numpy types that checkpoints written by stock nnU-Net code hold (logging values, _best_ema); allow-listed
# for torch.load(weights_only=True) so that those load too. Our own checkpoints hold plain Python values only.
def _numpy_safe_globals() -> list:
    out = [np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import _reconstruct, scalar  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import _reconstruct, scalar
    out += [scalar, _reconstruct]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                 "UInt8DType", "BoolDType"):
        t = getattr(getattr(np, "dtypes", None), name, None)
        if t is not None:
            out.append(t)
    return out


def load_checkpoint_file(path: str, map_location=None) -> dict:
    """``torch.load(path, weights_only=True)`` with numpy scalar/array types allow-listed (no arbitrary code)."""
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        return torch.load(path, map_location=map_location, weights_only=True)


class CheckpointMixin:
    """nnU-Net trainer checkpoints with the two changes of the module docstring; put it before nnUNetTrainer."""

    #: the domain a leave-one-domain-out fold holds out (set by the trainer), None for other folds
    held_out_domain: Optional[str] = None

    def save_checkpoint(self, filename: str) -> None:
        if self.held_out_domain is not None and os.path.basename(filename) == BEST:
            self.print_to_log_file(f"{BEST} not written: this fold validates on the held-out domain "
                                   f"{self.held_out_domain!r}; checkpoint_final is the model")
            return
        super().save_checkpoint(filename)

    def _plain_module(self) -> torch.nn.Module:
        """The network without its DDP and torch.compile wrappers."""
        mod = self.network.module if self.is_ddp else self.network
        return mod._orig_mod if isinstance(mod, OptimizedModule) else mod

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if not self.was_initialized:
            self.initialize()
        if isinstance(filename_or_checkpoint, dict):
            checkpoint = filename_or_checkpoint
        else:
            checkpoint = load_checkpoint_file(str(filename_or_checkpoint), map_location=self.device)
        own = self._plain_module()
        names = own.state_dict().keys()
        state = {k[7:] if k not in names and k.startswith("module.") else k: v
                 for k, v in checkpoint["network_weights"].items()}
        own.load_state_dict(state, strict=True)
        self.my_init_kwargs = checkpoint["init_args"]
        self.current_epoch = int(checkpoint["current_epoch"])
        self.logger.load_checkpoint(checkpoint["logging"])
        self._best_ema = checkpoint["_best_ema"]
        if checkpoint.get("inference_allowed_mirroring_axes") is not None:
            self.inference_allowed_mirroring_axes = tuple(checkpoint["inference_allowed_mirroring_axes"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint.get("grad_scaler_state") is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])


def load_pretrained_weights(network: torch.nn.Module, path: str) -> list:
    """``-pretrained_weights``: the weights of a checkpoint (a training one or a model folder's inference one, e.g. the
    built-in model's) into ``network`` (unwrapped), before training starts, as ``nnUNetv2_train -pretrained_weights``.

    Every weight of the file must fit a weight of the network (same name, same shape); the network may have whole
    modules the file lacks (a head the pretrained model was planned without, e.g. the disc head): those keep their
    initialisation. The one weight that depends on the patch, the encoder's learned positional embedding (the
    network's ``key_to_lpe``), may come from another token grid: your dataset's plans rarely give the pretrained
    model's patch. It is then resampled (trilinear) from the grid of the checkpoint's model folder (its
    ``plans.json``, nnU-Net's layout ``<model>/fold_<f>/<checkpoint>``) to the network's. Returns the names of the
    modules initialised anew; a ValueError names any other mismatch."""
    checkpoint = load_checkpoint_file(str(path), map_location="cpu")
    weights = dict(checkpoint["network_weights"])
    own = network.state_dict()
    lpe = getattr(network, "key_to_lpe", None)
    if lpe in weights and lpe in own and weights[lpe].shape != own[lpe].shape:
        weights[lpe] = resampled_position_embedding(weights[lpe], source_token_grid(path, checkpoint),
                                                    tuple(network.token_grid), path)
    wrong = [f"{k} {tuple(v.shape)} (network {tuple(own[k].shape) if k in own else 'has none'})"
             for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in weights]
    new_modules = sorted({k.split(".")[0] for k in missing})
    partly = [m for m in new_modules if any(k.startswith(m + ".") for k in weights)]
    if wrong or partly:
        raise ValueError(f"{path}: these weights do not fit the network: " + "; ".join(
            wrong + [f"module {m} only partly in the file" for m in partly]))
    network.load_state_dict({**own, **weights}, strict=True)
    return new_modules


def pretrained_lr_factor(trainer) -> float:
    """``$VERTEBRAFORMER_PRETRAINED_LR_FACTOR`` when set (an ablation or a user's own choice without a trainer of
    their own), else the trainer's ``PRETRAINED_LR_FACTOR`` (1 for nnU-Net's own trainers: they fine-tune at the full
    rate). A ValueError names a value that is not a positive number."""
    factor = positive_from_env(LR_FACTOR_ENV)
    return float(getattr(trainer, "PRETRAINED_LR_FACTOR", 1.0)) if factor is None else factor


def start_from_pretrained(trainer, path) -> list:
    """``-pretrained_weights`` on a built trainer: initialised when it is not yet, its network loaded from ``path``
    (:func:`load_pretrained_weights`), its peak learning rate scaled by :func:`pretrained_lr_factor` (the
    optimizer and schedule built again), said in its log. Returns the modules initialised anew."""
    if not trainer.was_initialized:
        trainer.initialize()
    fresh = load_pretrained_weights(trainer._plain_module(), str(path))
    trainer.print_to_log_file(f"weights from {path}" + (f"; initialised anew: {', '.join(fresh)}" if fresh else ""))
    factor = pretrained_lr_factor(trainer)
    only_new = bool(getattr(trainer, "TRAIN_ONLY_NEW_MODULES", False))
    if only_new:
        freeze_all_but(trainer._plain_module(), fresh, path)
        trainer.print_to_log_file(f"training only {', '.join(fresh)}: every weight of {path} stays as it is")
    if factor != 1.0:
        trainer.initial_lr *= factor
        trainer.print_to_log_file(f"fine-tuning at {factor:g} x the schedule's peak learning rate: "
                                  f"{trainer.initial_lr:g}")
    if only_new or factor != 1.0:
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    return fresh


def freeze_all_but(network: torch.nn.Module, modules: Sequence[str], path) -> None:
    """Only the parameters of the top-level ``modules`` train (``configure_optimizers`` takes the parameters that
    require gradients). A ValueError when there are none: the file already holds every module of the network."""
    if not modules:
        raise ValueError(f"{path}: the file holds every module of the network, so there is nothing new to train "
                         f"(plan the dataset with the head to add, e.g. plan-and-preprocess --disc-head)")
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in modules)


def source_token_grid(path: str, checkpoint: dict) -> Tuple[int, ...]:
    """The token grid (patch / token size per axis) the checkpoint's network was built for, from the plans of its
    model folder (two levels up) and the configuration the checkpoint names. A ValueError says what is missing."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = Path(path).resolve().parent.parent / "plans.json"
    configuration = (checkpoint.get("init_args") or {}).get("configuration")
    if not plans.is_file() or configuration is None:
        raise ValueError(f"{path}: its positional embedding is for another patch, and the patch it was trained with "
                         f"is unknown ({'no configuration in the checkpoint' if plans.is_file() else f'no {plans}'})")
    arch = PlansManager(str(plans)).get_configuration(configuration).network_arch_init_kwargs
    return tuple(int(p) // int(t) for p, t in zip(arch["patch_size"], arch["token_size"]))


def resampled_position_embedding(embedding: torch.Tensor, source_grid: Sequence[int], target_grid: Sequence[int],
                                 path: str = "") -> torch.Tensor:
    """A learned positional embedding (1, tokens, channels), tokens in the encoder's (x, y, z) order, resampled
    trilinearly from ``source_grid`` to ``target_grid`` (nnU-Net's axis order both)."""
    n, channels = embedding.shape[1], embedding.shape[2]
    if embedding.shape[0] != 1 or n != int(np.prod(source_grid)):
        raise ValueError(f"{path}: a positional embedding of shape {tuple(embedding.shape)} does not fit the token grid "
                         f"{list(source_grid)} of its plans")
    volume = embedding.float().reshape(1, *source_grid, channels).permute(0, 4, 1, 2, 3)
    volume = torch.nn.functional.interpolate(volume, size=tuple(int(g) for g in target_grid), mode="trilinear",
                                             align_corners=False)
    return volume.permute(0, 2, 3, 4, 1).reshape(1, -1, channels).to(embedding.dtype)


#: what a prediction needs from a checkpoint (``predictor.initialize_from_trained_model_folder``)
INFERENCE_KEYS = ("trainer_name", "inference_allowed_mirroring_axes", "current_epoch")


def inference_checkpoint(checkpoint: dict, dtype: torch.dtype = torch.float16) -> dict:
    """A checkpoint cut to what prediction reads: the network's weights (floating ones stored as ``dtype``; the
    predictor's ``load_state_dict`` casts them back to the network's float32), the trainer's name, the configuration
    and fold, the mirroring axes. No optimizer state, no logs, no embedded plans or dataset.json (the model folder has
    them): about a third of a training checkpoint at float32, a sixth at float16."""
    weights = {k: (v.to(dtype) if v.is_floating_point() else v).clone()
               for k, v in checkpoint["network_weights"].items()}
    init = checkpoint["init_args"]
    return {"network_weights": weights, **{k: checkpoint.get(k) for k in INFERENCE_KEYS},
            "init_args": {"configuration": init["configuration"], "fold": init.get("fold")}}
