"""``VertebraFormerTrainer_budget_newHeads``: give a trained model a head it was planned without (the disc head),
leaving everything it already does as it was.

Started with ``-pretrained_weights`` on plans that add the head (``plan-and-preprocess --disc-head``), it trains
only the modules the file lacks (``checkpoints.start_from_pretrained``); every other weight is frozen, so every
output the pretrained model had stays as it was (its segmentation, levels and lesions), and a step costs about a
third of a full one (no backward pass through the frozen trunk). The new modules start from their initialisation,
so they train at the schedule's full rate. Fine-tuning the whole network with the new head instead moves what the
model had learnt (benchmarks/results/disc_head_2026-12-03; this trainer's first use:
benchmarks/results/disc_head_only_2026-12-04).
"""
from __future__ import annotations

from .budget import VertebraFormerTrainer_budget

#: what a run of a trainer that adds heads needs (said by ``vertebraformer train`` and by the trainer itself)
NEEDS_PRETRAINED = ("{trainer} adds heads to a trained model: start it with -pretrained_weights (a checkpoint, or "
                    "builtin); a stopped run starts again the same way")


class VertebraFormerTrainer_budget_newHeads(VertebraFormerTrainer_budget):
    """The wall-clock budget of ``VertebraFormerTrainer_budget``; only the modules the pretrained weights lack train."""

    TRAIN_ONLY_NEW_MODULES = True
    PRETRAINED_LR_FACTOR = 1.0

    def on_train_start(self):
        if not self.was_initialized or all(p.requires_grad for p in self._plain_module().parameters()):
            raise ValueError(NEEDS_PRETRAINED.format(trainer=type(self).__name__))
        super().on_train_start()
