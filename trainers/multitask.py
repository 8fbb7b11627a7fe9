"""The multi-task training and validation steps of the VertebraFormer trainers (DESIGN.md section 6).

Under ``all_heads`` the network returns every head; the loss is nnU-Net's Dice + CE on ``target[:, :1]`` (vertebra
labels, ``self.loss``) plus the binary "any vertebra" Dice, the level cross-entropy on vertebra voxels, the lesion
BCE + soft Dice on ``target[:, 1:2]``, the domain-code cross-entropy and the disc head's BCE + soft Dice (its target
built from the vertebra labels, ``losses.between_vertebrae``), with the lesion and domain terms masked per
case (:mod:`losses`, :mod:`case_table`) and the segmentation's ignore label left out of every vertebra term.
Per-task losses and metrics go to the log and the progress plots (:mod:`progress`); under DDP they are gathered
across ranks.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from torch import distributed as dist

from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.collate_outputs import collate_outputs

from vertebraformer_nn.evaluation.metrics import dice_from_counts
from vertebraformer_nn.network import all_heads
from vertebraformer_nn.precision import autocast_for

from . import losses as L
from .progress import METRIC_KEYS, TASK_LOSSES


class MultiTaskStepsMixin:
    """``train_step`` / ``validation_step`` and their epoch ends for the all-heads network; put it before
    nnUNetTrainer. Needs ``case_table``, ``loss_weights``, ``lesion_dice_weight``, ``lesion_fn_weight``,
    ``boundary_reach`` and ``grad_clip``."""

    def disc_target(self, out: dict, target: torch.Tensor) -> Optional[torch.Tensor]:
        """The disc head's target of a batch (``losses.between_vertebrae``), None for a network without the head."""
        return L.between_vertebrae(target[:, :1], self.boundary_reach) if out.get("boundary") is not None else None

    def compute_losses(self, out: dict, target: torch.Tensor, keys, disc_t: Optional[torch.Tensor] = None):
        """(total loss, {task: loss}) for a batch; ``out`` is the network's all-heads dict, ``disc_t`` the batch's
        :meth:`disc_target` when the caller has it already."""
        seg_t = target[:, :1]
        ignore = self.label_manager.ignore_label
        lesion_w, dom_t, dom_w = self.case_table.tensors(keys, target.device)
        if target.shape[1] > 1:
            lesion_t = target[:, 1:2]
        else:  # no lesion channel in this preprocessed data: the lesion loss is weighted zero for every case
            lesion_t = torch.zeros_like(seg_t)
            lesion_w = torch.zeros_like(lesion_w)
        parts = {"seg": self.loss(out["seg"], seg_t)}
        zero = L.zero_like_graph(out["seg"])
        parts["id"] = L.identification_loss(out["id"], seg_t, torch.ones_like(lesion_w), ignore) \
            if out["id"] is not None else zero
        if out["lesion"] is not None:
            parts["lesion"], _ = L.binary_map_loss(out["lesion"], lesion_t, lesion_w, self.lesion_dice_weight,
                                               fn_weight=self.lesion_fn_weight)
        else:
            parts["lesion"] = zero
        parts["domain"] = L.domain_loss(out["domain_logits"], dom_t, dom_w) if out["domain_logits"] is not None \
            else zero
        if disc_t is None:
            disc_t = self.disc_target(out, target)
        # the disc target is known in every case (it comes from the vertebra labels): soft Dice, weight one
        parts["boundary"] = L.binary_map_loss(out["boundary"], disc_t, torch.ones_like(lesion_w))[0] \
            if disc_t is not None else zero
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
            disc_t = self.disc_target(out, target)
            total, parts = self.compute_losses(out, target, keys, disc_t)
        seg_t = target[:, :1]
        ignore = self.label_manager.ignore_label
        output = out["seg"]
        # nnU-Net's pseudo Dice (its validation_step): hard one-hot prediction, ignored voxels masked out
        pred = torch.zeros(output.shape, device=output.device, dtype=torch.float16)
        pred.scatter_(1, output.argmax(1)[:, None], 1)
        known = L.known_voxels(seg_t, ignore)
        mask = None if known is None else known.float()
        tp, fp, fn, _ = get_tp_fp_fn_tn(pred, seg_t if known is None else torch.where(known, seg_t, 0),
                                        axes=[0] + list(range(2, output.ndim)), mask=mask)
        res = {"loss": total.detach().cpu().numpy(), "tp_hard": tp.detach().cpu().numpy()[1:],
               "fp_hard": fp.detach().cpu().numpy()[1:], "fn_hard": fn.detach().cpu().numpy()[1:]}
        res.update({f"loss_{k}": float(v.detach()) for k, v in parts.items()})
        btp, bfp, bfn = L.binary_counts(output, seg_t, ignore)
        lesion_w, dom_t, dom_w = self.case_table.tensors(keys, target.device)
        id_c, id_n = L.identification_counts(out["id"], seg_t, torch.ones_like(lesion_w), ignore) \
            if out["id"] is not None else (0.0, 0.0)
        if out["lesion"] is not None and target.shape[1] > 1:
            ltp, lfp, lfn = L.binary_map_counts(out["lesion"], target[:, 1:2], lesion_w)
        else:
            ltp = lfp = lfn = 0.0
        dc, dn = L.domain_counts(out["domain_logits"], dom_t, dom_w) if out["domain_logits"] is not None \
            else (0.0, 0.0)
        dtp, dfp, dfn = L.binary_map_counts(out["boundary"], disc_t, torch.ones_like(lesion_w)) \
            if disc_t is not None else (0.0, 0.0, 0.0)
        res["counts"] = np.array([btp, bfp, bfn, id_c, id_n, ltp, lfp, lfn, dc, dn, dtp, dfp, dfn],
                                 dtype=np.float64)
        return res

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        super().on_validation_epoch_end(val_outputs)
        outputs = collate_outputs(val_outputs)
        counts = outputs["counts"].sum(0)
        if self.is_ddp:
            gathered = [None for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, counts)
            counts = np.sum(gathered, 0)
        btp, bfp, bfn, id_c, id_n, ltp, lfp, lfn, dc, dn, dtp, dfp, dfn = counts
        e = self.current_epoch
        self.logger.log("val_spine_dice", dice_from_counts(btp, bfp, bfn), e)
        self.logger.log("val_id_accuracy", L.ratio(id_c, id_n), e)
        self.logger.log("val_lesion_dice", dice_from_counts(ltp, lfp, lfn), e)
        self.logger.log("val_domain_accuracy", L.ratio(dc, dn), e)
        self.logger.log("val_boundary_dice", dice_from_counts(dtp, dfp, dfn), e)
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
        get = lambda k: self.logger.get_value(k, step=-1)  # noqa: E731
        self.print_to_log_file("task losses train / val: " + ", ".join(
            f"{t} {get(f'train_loss_{t}'):.4f} / {get(f'val_loss_{t}'):.4f}" for t in TASK_LOSSES))
        self.print_to_log_file("val metrics: " + ", ".join(f"{k[4:]} {get(k):.4f}" for k in METRIC_KEYS))
        super().on_epoch_end()  # nnU-Net's lines, checkpoints (save_checkpoint), progress plots, epoch counter
