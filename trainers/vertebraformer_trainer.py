"""VertebraFormerTrainer: nnU-Net 2.8.1's trainer with the VertebraFormer multi-task training (DESIGN.md section 6).

What differs from ``nnUNetTrainer`` (everything else, folders, checkpoint names, validation export, is nnU-Net's):

* deep supervision off (the network has none; ``set_deep_supervision_enabled`` is a no-op);
* AdamW (lr 3e-4, weight decay 0.05, betas 0.9/0.98 as Primus) with linear warm-up then poly decay, one
  optimizer for the whole run (:class:`schedule.WarmupPolyLRScheduler`), gradient norm clipped at 1;
* augmentation: mirroring across left-right only (training and test time), rotations about the head-foot axis
  (+-30 deg) with at most 8 deg of tilt about the others, no dummy-2D; the axes come from the plans'
  ``transpose_forward`` applied to the RAS (S, A, R) array (:func:`schedule.anatomical_axes`);
* lesion-aware patch sampling (:mod:`dataloading`);
* the multi-task loss under ``all_heads``: nnU-Net's Dice + CE on ``target[:, :1]`` (vertebra labels) plus a
  binary "any vertebra" soft Dice, from one log-softmax (``losses.segmentation_loss``: same value as nnU-Net's
  ``DC_and_CE_loss``, half the cost), level cross-entropy on vertebra voxels, lesion BCE + soft Dice on
  ``target[:, 1:2]``, domain-code cross-entropy, with the lesion and domain terms masked per case (:mod:`losses`, :mod:`case_table`);
* per-task losses and metrics in the log and ``progress.png`` (:mod:`progress`);
* checkpoints that load with ``torch.load(weights_only=True)`` (plain Python values only) and a
  ``load_checkpoint`` that accepts a path or a dict (2.8.1 has a NameError on dicts, and its warm-up trainer
  fails on torch >= 2.6);
* a fold beyond ``splits_final.json`` is an error; a leave-one-domain-out fold (entry with
  ``held_out_domain``) never writes ``checkpoint_best`` (it would be chosen on the held-out domain);
* ``torch.compile`` stays off: the network changes its output structure through a plain attribute
  (``output_mode``: seg tensor for nnU-Net's predictor and validation, dict for our training step), which
  dynamo guards on and recompiles for, and neither the 3D-RoPE Eva blocks nor the FiLM modulation have been
  shown to compile correctly here (no GPU). Turn it on only after that is shown.

DDP: nnU-Net's ``-num_gpus`` path is designed for (every head enters the loss, masked terms are multiplied by
zero, frozen parameters of switched-off components have ``requires_grad=False``, ``all_heads`` unwraps DDP's
``.module``, metrics are summed across ranks) but unproven: no multi-GPU machine was available.
"""
from __future__ import annotations

import json
import os
import warnings
from time import time
from typing import List, Optional, Union

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
from torch import distributed as dist
from torch._dynamo import OptimizedModule

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.ddp_allgather import AllGatherGrad
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from vertebraformer_nn.network import all_heads
from vertebraformer_nn.planners.presets import complete_legacy_arch_kwargs
from vertebraformer_nn.precision import autocast_for, describe as describe_precision

from . import losses as L
from .case_table import CaseTable
from .dataloading import LesionAwareDataLoader
from .progress import METRIC_KEYS, MultiTaskLocalLogger, TASK_LOSSES, to_plain
from .schedule import AxisRotation, WarmupPolyLRScheduler, anatomical_axes, mirror_axes_for


class FoldError(ValueError):
    """A fold that the splits file does not define."""


def read_splits(preprocessed_dataset_folder_base: str) -> Optional[list]:
    path = join(preprocessed_dataset_folder_base, "splits_final.json")
    return load_json(path) if isfile(path) else None


def check_fold(fold: Union[int, str], splits: Optional[list]) -> Optional[dict]:
    """The splits entry of ``fold`` (None for 'all'). Without a splits file nnU-Net creates 5 folds, so 0-4.

    Raises FoldError for any other fold (nnU-Net would silently train a random 80:20 split)."""
    if fold == "all":
        return None
    try:
        fold = int(fold)
    except (TypeError, ValueError):
        raise FoldError(f"fold must be an integer or 'all', not {fold!r}") from None
    n = len(splits) if splits is not None else 5
    if not 0 <= fold < n:
        where = "splits_final.json defines" if splits is not None else "without a splits_final.json nnU-Net makes"
        extra = ""
        if splits is not None:
            lodo = [f"{i} ({e['held_out_domain']} held out)" for i, e in enumerate(splits) if "held_out_domain" in e]
            extra = f"; folds 0-{min(n, 5) - 1} are cross-validation" + (f", leave-one-domain-out: {', '.join(lodo)}" if lodo else "")
        raise FoldError(f"fold {fold} does not exist: {where} {n} folds (0-{n - 1}){extra}. nnU-Net would silently "
                        f"train a random 80:20 split instead; refusing.")
    return splits[fold] if splits is not None else {}


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


class VertebraFormerTrainer(nnUNetTrainer):
    #: attribute overrides applied at the end of __init__'s schedule settings (see variants.py)
    SCHEDULE: dict = {}
    #: network keyword arguments that override the plans' ``arch_kwargs`` (the ablation switches, ablation.py);
    #: applied in training and, since nnU-Net's predictors build the network through the trainer class, in
    #: prediction too
    ARCH_OVERRIDES: dict = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.initial_lr = 3e-4
        self.weight_decay = 5e-2
        self.num_epochs = 1000
        self.warmup_epochs = 50
        self.num_iterations_per_epoch = 250
        self.num_val_iterations_per_epoch = 50
        self.grad_clip = 1.0
        #: weights of the task losses in the total (segmentation = 1)
        self.loss_weights = {"seg": 1.0, "id": 0.5, "lesion": 1.0, "domain": 0.1}
        self.lesion_dice_weight = 1.0
        #: weight of the binary "any vertebra" soft Dice added to the segmentation loss (losses.segmentation_loss)
        self.spine_dice_weight = 1.0
        self.lesion_oversample_percent = 0.2
        for name, value in self.SCHEDULE.items():  # short-schedule variants (variants.py) override these
            setattr(self, name, value)

        self.logger.local_logger = MultiTaskLocalLogger(self.logger.local_logger.verbose)
        arch = self.configuration_manager.network_arch_init_kwargs or {}
        self.num_domains = int(arch.get("num_domains", 4))
        self.case_table = CaseTable.from_dataset_json(dataset_json, num_domains=self.num_domains)

        self.held_out_domain = None
        if self.preprocessed_dataset_folder_base is not None:
            entry = check_fold(fold, read_splits(self.preprocessed_dataset_folder_base))
            self.held_out_domain = (entry or {}).get("held_out_domain")
            if self.held_out_domain is not None:
                self.print_to_log_file(f"Leave-one-domain-out fold: validates on held-out domain "
                                       f"{self.held_out_domain!r}; no checkpoint_best is written (checkpoint_final is "
                                       f"the model)")

    # ------------------------------------------------------------------ configuration
    def _do_i_compile(self):
        if os.environ.get("nnUNet_compile", "").lower() in ("true", "1", "t"):
            self.print_to_log_file("INFO: torch.compile stays off for VertebraFormer (not shown to work with its "
                                   "switchable output mode and 3D RoPE blocks)")
        return False

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """nnU-Net's network from the plans (an entry of version 0.1 completed with the sizes it built), with
        :attr:`ARCH_OVERRIDES` applied."""
        arch_kwargs = complete_legacy_arch_kwargs(configuration_manager.network_arch_init_kwargs or {},
                                                  getattr(plans_manager, "plans_name", None))
        return get_network_from_plans(
            configuration_manager.network_arch_class_name, {**arch_kwargs, **cls.ARCH_OVERRIDES},
            configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
            allow_init=True, deep_supervision=enable_deep_supervision)

    def set_deep_supervision_enabled(self, enabled: bool):
        pass  # no deep supervision in this network

    def _build_loss(self):
        """The segmentation loss on ``target[:, :1]`` (``self.loss``, as in nnU-Net); the other task losses are
        in compute_losses."""
        batch_dice = self.configuration_manager.batch_dice
        ignore_label = self.label_manager.ignore_label
        gather = AllGatherGrad.apply if self.is_ddp else None

        def seg_loss(seg_logits: torch.Tensor, seg_target: torch.Tensor) -> torch.Tensor:
            return L.segmentation_loss(seg_logits, seg_target, batch_dice, self.spine_dice_weight,
                                       ignore_label=ignore_label, gather=gather)

        return seg_loss

    def configure_optimizers(self):
        net = self.network.module if hasattr(self.network, "module") and not isinstance(self.network, OptimizedModule) \
            else self.network
        params = [p for p in net.parameters() if p.requires_grad]  # switched-off components are frozen
        optimizer = torch.optim.AdamW(params, lr=self.initial_lr, weight_decay=self.weight_decay, betas=(0.9, 0.98),
                                      fused=self.device.type == "cuda")
        scheduler = WarmupPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)
        return optimizer, scheduler

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        patch_size = self.configuration_manager.patch_size
        if len(patch_size) != 3:
            raise RuntimeError("VertebraFormerTrainer trains 3D configurations only")
        axes = anatomical_axes(self.plans_manager.transpose_forward)
        rotation = AxisRotation(axes["si"])
        initial_patch_size = get_patch_size(patch_size, rotation.range_for(0), rotation.range_for(1),
                                            rotation.range_for(2), (0.85, 1.25))
        mirror_axes = mirror_axes_for(self.plans_manager.transpose_forward)
        self.inference_allowed_mirroring_axes = tuple(int(a) for a in mirror_axes)
        self.print_to_log_file(f"axes after transpose {list(self.plans_manager.transpose_forward)}: {axes}; "
                               f"mirroring {mirror_axes}; {rotation}; no dummy-2D augmentation")
        return rotation, False, initial_patch_size, self.inference_allowed_mirroring_axes

    # ------------------------------------------------------------------ data
    def get_dataloaders(self):
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        tr_transforms = self.get_training_transforms(
            patch_size, rotation, None, mirror_axes, dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label)
        val_transforms = self.get_validation_transforms(
            None, is_cascaded=self.is_cascaded, foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label)
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        common = dict(oversample_foreground_percent=self.oversample_foreground_percent, sampling_probabilities=None,
                      pad_sides=None, probabilistic_oversampling=self.probabilistic_oversampling,
                      lesion_oversample_percent=self.lesion_oversample_percent)
        dl_tr = LesionAwareDataLoader(dataset_tr, self.batch_size, initial_patch_size, patch_size, self.label_manager,
                                      transforms=tr_transforms, **common)
        dl_val = LesionAwareDataLoader(dataset_val, self.batch_size, patch_size, patch_size, self.label_manager,
                                       transforms=val_transforms, **common)
        n = get_allowed_n_proc_DA()
        if n == 0:
            mt_tr, mt_val = SingleThreadedAugmenter(dl_tr, None), SingleThreadedAugmenter(dl_val, None)
        else:
            pin = self.device.type == "cuda"
            mt_tr = NonDetMultiThreadedAugmenter(dl_tr, None, n, max(6, n // 2), None, pin, 0.002)
            mt_val = NonDetMultiThreadedAugmenter(dl_val, None, max(1, n // 2), max(3, n // 4), None, pin, 0.002)
        _ = next(mt_tr)
        _ = next(mt_val)
        return mt_tr, mt_val

    def on_train_start(self):
        super().on_train_start()
        self._complete_case_table()
        self.print_to_log_file(f"Training precision on {self.device}: {describe_precision(self.device)}")

    def _complete_case_table(self) -> None:
        """Cases missing from dataset.json's case_info: take the facts the preprocessor put in their properties."""
        from batchgenerators.utilities.file_and_folder_operations import load_pickle

        from .case_table import facts_from_properties

        ids = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        for case in (i for i in ids if i not in self.case_table.facts):
            pkl = join(self.preprocessed_dataset_folder, case + ".pkl")
            facts = facts_from_properties(load_pickle(pkl)) if isfile(pkl) else None
            if facts is not None:
                self.case_table.facts[case] = facts
            else:
                self.print_to_log_file(f"WARNING: no annotation facts for {case} (not in dataset.json case_info nor "
                                       f"its properties): its lesion and domain losses are weighted 0")

    def do_split(self):
        if self.fold != "all" and self.preprocessed_dataset_folder_base is not None:
            check_fold(self.fold, read_splits(self.preprocessed_dataset_folder_base))
        return super().do_split()

    # ------------------------------------------------------------------ losses
    def compute_losses(self, out: dict, target: torch.Tensor, keys):
        """(total loss, {task: loss}) for a batch; ``out`` is the network's all-heads dict."""
        seg_t = target[:, :1]
        lesion_w, dom_t, dom_w = self.case_table.tensors(keys, target.device)
        if target.shape[1] > 1:
            lesion_t = target[:, 1:2]
        else:  # no lesion channel in this preprocessed data: the lesion loss is weighted zero for every case
            lesion_t = torch.zeros_like(seg_t)
            lesion_w = torch.zeros_like(lesion_w)
        parts = {"seg": self.loss(out["seg"], seg_t)}
        zero = L.zero_like_graph(out["seg"])
        parts["id"] = L.identification_loss(out["id"], seg_t, torch.ones_like(lesion_w)) if out["id"] is not None else zero
        if out["lesion"] is not None:
            parts["lesion"], _ = L.lesion_loss(out["lesion"], lesion_t, lesion_w, self.lesion_dice_weight)
        else:
            parts["lesion"] = zero
        parts["domain"] = L.domain_loss(out["domain_logits"], dom_t, dom_w) if out["domain_logits"] is not None else zero
        total = sum(self.loss_weights[k] * v for k, v in parts.items())
        return total, parts

    def _forward_all(self, data):
        with all_heads(self.network):
            out = self.network(data)
        if self.device.type == "cpu":  # bfloat16 autocast: losses (softmax, Dice sums) in float32; the level
            # logits are cast by identification_loss after it has picked out the vertebra voxels
            out = {k: v.float() if torch.is_tensor(v) and k != "id" else v for k, v in out.items()}
        return out

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_for(self.device):
            out = self._forward_all(data)
            total, parts = self.compute_losses(out, target, batch["keys"])
        if self.grad_scaler is not None:
            self.grad_scaler.scale(total).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
            self.optimizer.step()
        return {"loss": total.detach().cpu().numpy(), **{f"loss_{k}": float(v.detach()) for k, v in parts.items()}}

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        outputs = collate_outputs(train_outputs)
        for task in TASK_LOSSES:
            self.logger.log(f"train_loss_{task}", self._mean_across_ranks(outputs[f"loss_{task}"]), self.current_epoch)

    def validation_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        keys = batch["keys"]
        with autocast_for(self.device):
            out = self._forward_all(data)
            total, parts = self.compute_losses(out, target, keys)
        seg_t = target[:, :1]
        output = out["seg"]
        axes = [0] + list(range(2, output.ndim))
        pred = torch.zeros(output.shape, device=output.device, dtype=torch.float16)
        pred.scatter_(1, output.argmax(1)[:, None], 1)
        mask = None
        if self.label_manager.has_ignore_label:  # as nnU-Net's validation_step: ignored voxels count nowhere
            mask = (seg_t != self.label_manager.ignore_label).float()
            seg_t = torch.where(mask.bool(), seg_t, torch.zeros_like(seg_t))
        tp, fp, fn, _ = get_tp_fp_fn_tn(pred, seg_t, axes=axes, mask=mask)
        res = {"loss": total.detach().cpu().numpy(), "tp_hard": tp.detach().cpu().numpy()[1:],
               "fp_hard": fp.detach().cpu().numpy()[1:], "fn_hard": fn.detach().cpu().numpy()[1:]}
        res.update({f"loss_{k}": float(v.detach()) for k, v in parts.items()})
        btp, bfp, bfn = L.binary_counts(output, seg_t)
        lesion_w, dom_t, dom_w = self.case_table.tensors(keys, target.device)
        id_c, id_n = L.identification_counts(out["id"], seg_t, torch.ones_like(lesion_w)) if out["id"] is not None \
            else (0.0, 0.0)
        if out["lesion"] is not None and target.shape[1] > 1:
            ltp, lfp, lfn = L.lesion_counts(out["lesion"], target[:, 1:2], lesion_w)
        else:
            ltp = lfp = lfn = 0.0
        dc, dn = L.domain_counts(out["domain_logits"], dom_t, dom_w) if out["domain_logits"] is not None else (0.0, 0.0)
        res["counts"] = np.array([btp, bfp, bfn, id_c, id_n, ltp, lfp, lfn, dc, dn], dtype=np.float64)
        return res

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        super().on_validation_epoch_end(val_outputs)
        outputs = collate_outputs(val_outputs)
        counts = outputs["counts"].sum(0)
        if self.is_ddp:
            gathered = [None for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, counts)
            counts = np.sum(gathered, 0)
        btp, bfp, bfn, id_c, id_n, ltp, lfp, lfn, dc, dn = counts
        e = self.current_epoch
        self.logger.log("val_spine_dice", L.dice_from_counts(btp, bfp, bfn), e)
        self.logger.log("val_id_accuracy", L.ratio(id_c, id_n), e)
        self.logger.log("val_lesion_dice", L.dice_from_counts(ltp, lfp, lfn), e)
        self.logger.log("val_domain_accuracy", L.ratio(dc, dn), e)
        for task in TASK_LOSSES:
            self.logger.log(f"val_loss_{task}", self._mean_across_ranks(outputs[f"loss_{task}"]), e)

    def _mean_across_ranks(self, values) -> float:
        values = [float(v) for v in values]
        if self.is_ddp:
            gathered = [None for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, values)
            values = [v for part in gathered for v in part]
        return float(np.mean(values)) if values else float("nan")

    def on_epoch_end(self):
        # nnU-Net's on_epoch_end, plus the per-task lines, and no checkpoint_best on a leave-one-domain-out fold
        self.logger.log("epoch_end_timestamps", time(), self.current_epoch)
        get = lambda k: self.logger.get_value(k, step=-1)  # noqa: E731
        self.print_to_log_file("train_loss", np.round(get("train_losses"), decimals=4))
        self.print_to_log_file("val_loss", np.round(get("val_losses"), decimals=4))
        self.print_to_log_file("Pseudo dice", [np.round(i, decimals=4) for i in get("dice_per_class_or_region")])
        self.print_to_log_file("task losses train / val: " + ", ".join(
            f"{t} {get(f'train_loss_{t}'):.4f} / {get(f'val_loss_{t}'):.4f}" for t in TASK_LOSSES))
        self.print_to_log_file("val metrics: " + ", ".join(f"{k[4:]} {get(k):.4f}" for k in METRIC_KEYS))
        self.print_to_log_file(f"Epoch time: {np.round(get('epoch_end_timestamps') - get('epoch_start_timestamps'), 2)} s")

        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != (self.num_epochs - 1):
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        ema = get("ema_fg_dice")
        if self.held_out_domain is None:
            if self._best_ema is None or ema > self._best_ema:
                self._best_ema = float(ema)
                self.print_to_log_file(f"Yayy! New best EMA pseudo Dice: {np.round(self._best_ema, decimals=4)}")
                self.save_checkpoint(join(self.output_folder, "checkpoint_best.pth"))
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    # ------------------------------------------------------------------ checkpoints
    def _plain_module(self):
        mod = self.network.module if self.is_ddp else self.network
        return mod._orig_mod if isinstance(mod, OptimizedModule) else mod

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        init_args = dict(self.my_init_kwargs)
        checkpoint = {
            "network_weights": self._plain_module().state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": {k: to_plain(v) for k, v in self.logger.get_checkpoint().items()},
            "_best_ema": None if self._best_ema is None else float(self._best_ema),
            "current_epoch": int(self.current_epoch + 1),
            "init_args": init_args,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": None if self.inference_allowed_mirroring_axes is None else
            tuple(int(a) for a in self.inference_allowed_mirroring_axes),
        }
        torch.save(checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if not self.was_initialized:
            self.initialize()
        if isinstance(filename_or_checkpoint, dict):
            checkpoint = filename_or_checkpoint
        else:
            checkpoint = load_checkpoint_file(str(filename_or_checkpoint), map_location=self.device)
        own = self._plain_module()
        state = {}
        for key, value in checkpoint["network_weights"].items():
            if key not in own.state_dict() and key.startswith("module."):
                key = key[7:]
            state[key] = value
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

    # ------------------------------------------------------------------ final validation
    def perform_actual_validation(self, save_probabilities: bool = False):
        self.network.eval()
        super().perform_actual_validation(save_probabilities)
        if self.local_rank == 0:
            try:
                self.write_spine_summary()
            except Exception as e:  # the extra summary must never lose nnU-Net's own validation
                warnings.warn(f"could not write the VertebraFormer validation summary: {e}")

    def write_spine_summary(self) -> dict:
        """validation/summary_vertebraformer.json: binary spine Dice per case and mean, per-level Dice by name."""
        import SimpleITK as sitk

        from vertebraformer_nn.labels import ANATOMICAL_ORDER

        folder = join(self.output_folder, "validation")
        gt_folder = join(self.preprocessed_dataset_folder_base, "gt_segmentations")
        ending = self.dataset_json["file_ending"]
        per_case = {}
        for name in sorted(os.listdir(folder)):
            if not name.endswith(ending) or not isfile(join(gt_folder, name)):
                continue
            pred = sitk.GetArrayFromImage(sitk.ReadImage(join(folder, name))) > 0
            gt = sitk.GetArrayFromImage(sitk.ReadImage(join(gt_folder, name))) > 0
            tp, fp, fn = float((pred & gt).sum()), float((pred & ~gt).sum()), float((~pred & gt).sum())
            per_case[name[: -len(ending)]] = L.dice_from_counts(tp, fp, fn)
        per_level = {}
        summary_file = join(folder, "summary.json")
        if isfile(summary_file):
            mean = load_json(summary_file).get("mean", {})
            for label, metrics in sorted(mean.items(), key=lambda kv: int(kv[0])):
                k = int(label)
                if 1 <= k <= len(ANATOMICAL_ORDER):
                    per_level[ANATOMICAL_ORDER[k - 1]] = metrics.get("Dice")
        values = [v for v in per_case.values() if v == v]
        result = {"binary_spine_dice_mean": float(np.mean(values)) if values else None,
                  "binary_spine_dice_per_case": per_case, "dice_per_level": per_level,
                  "held_out_domain": self.held_out_domain}
        with open(join(folder, "summary_vertebraformer.json"), "w") as f:
            json.dump(result, f, indent=2, allow_nan=True)
        self.print_to_log_file(f"Binary spine Dice (validation, mean over cases): {result['binary_spine_dice_mean']}")
        return result
