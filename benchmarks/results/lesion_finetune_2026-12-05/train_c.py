"""Arm C: the same fine-tune plus a lytic-recall term: binary cross-entropy towards "lesion" on the lesion voxels
darker than 500 HU in the augmented input (lytic lesions; blastic ones are 1000+ HU), lesion-annotated cases only,
weight LAMBDA. Patched into this process's trainer before it is built."""
import sys
import torch
import torch.nn.functional as F
LAMBDA, LYTIC_BELOW_HU = 1.0, 500.0
if __name__ == '__main__':
    from vertebraformer_nn.trainers.multitask import MultiTaskStepsMixin
    step, losses = MultiTaskStepsMixin.train_step, MultiTaskStepsMixin.compute_losses

    def train_step(self, batch):
        self._lytic_image = batch["data"]
        try:
            return step(self, batch)
        finally:
            self._lytic_image = None

    def compute_losses(self, out, target, keys, disc_t=None):
        total, parts = losses(self, out, target, keys, disc_t)
        image = getattr(self, "_lytic_image", None)
        if image is None or out.get("lesion") is None or target.shape[1] < 2:
            return total, parts
        props = self.plans_manager.foreground_intensity_properties_per_channel["0"]
        below = (LYTIC_BELOW_HU - props["mean"]) / props["std"]
        lesion_w, _, _ = self.case_table.tensors(keys, target.device)
        annotated = (lesion_w > 0).view(-1, *([1] * (target.ndim - 1)))
        lytic = (target[:, 1:2] > 0) & (image.to(target.device)[:, :1] < below) & annotated
        if lytic.any():
            logits = out["lesion"].float()[lytic]
            total = total + LAMBDA * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return total, parts

    MultiTaskStepsMixin.train_step, MultiTaskStepsMixin.compute_losses = train_step, compute_losses
    from vertebraformer_nn.cli import main
    sys.exit(main(sys.argv[1:]))
