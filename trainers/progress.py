"""nnU-Net's LocalLogger with the per-task keys, and their curves in ``progress_tasks.png`` beside nnU-Net's
``progress.png``.

``LocalLogger.log`` asserts that a key is one of its predefined lists and wants exactly one value per epoch;
the keys below are added to that dict, and the trainer logs each of them once per epoch (NaN when an epoch
had nothing to score, e.g. no lesion-annotated validation patch). Values are stored as plain Python floats (nnU-Net
logs numpy floats): nnU-Net's ``save_checkpoint`` writes the lists as they are, and the checkpoint then loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from numbers import Number

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join

from nnunetv2.training.logging.nnunet_logger import LocalLogger

TASK_LOSSES = ("seg", "id", "lesion", "domain", "boundary")
TRAIN_LOSS_KEYS = tuple(f"train_loss_{t}" for t in TASK_LOSSES)
VAL_LOSS_KEYS = tuple(f"val_loss_{t}" for t in TASK_LOSSES)
METRIC_KEYS = ("val_spine_dice", "val_id_accuracy", "val_lesion_dice", "val_domain_accuracy", "val_boundary_dice")
EXTRA_KEYS = TRAIN_LOSS_KEYS + VAL_LOSS_KEYS + METRIC_KEYS
#: the per-task plot, written beside nnU-Net's progress.png
TASKS_PNG = "progress_tasks.png"


def to_plain(value):
    """numpy scalars / arrays -> Python floats / lists (weights_only-loadable checkpoints)."""
    if isinstance(value, np.ndarray):
        return [to_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, Number)) and not isinstance(value, int):
        return float(value)
    return value


class MultiTaskLocalLogger(LocalLogger):
    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        for key in EXTRA_KEYS:
            self.my_fantastic_logging[key] = list()

    def log(self, key, value, epoch: int):
        super().log(key, to_plain(value), epoch)

    def load_checkpoint(self, checkpoint: dict):
        logging = {k: list(v) for k, v in checkpoint.items()}
        n = len(logging.get("train_losses", []))
        for key in EXTRA_KEYS:  # a checkpoint written without these keys: pad with NaN
            logging.setdefault(key, [math.nan] * n)
        self.my_fantastic_logging = logging

    def plot_progress_png(self, output_folder):
        """nnU-Net's ``progress.png``, then the per-task curves in ``progress_tasks.png`` beside it."""
        super().plot_progress_png(output_folder)
        import matplotlib.pyplot as plt  # nnU-Net's logger module has selected the agg backend

        log = self.my_fantastic_logging
        epoch = min(len(v) for v in log.values()) - 1
        if epoch < 0:
            return
        x = list(range(epoch + 1))
        fig, (losses, metrics) = plt.subplots(2, 1, figsize=(30, 36))
        colors = dict(seg='b', id='m', lesion='r', domain='g', boundary='c')
        for t in TASK_LOSSES:
            losses.plot(x, log[f"train_loss_{t}"][:epoch + 1], color=colors[t], label=f"train {t}", linewidth=4)
            losses.plot(x, log[f"val_loss_{t}"][:epoch + 1], color=colors[t], ls='dotted', label=f"val {t}",
                        linewidth=4)
        losses.set_xlabel("epoch"), losses.set_ylabel("loss per task"), losses.legend(loc=(0, 1), ncol=5)
        for key, c in zip(METRIC_KEYS, ('b', 'm', 'r', 'g', 'c')):
            metrics.plot(x, log[key][:epoch + 1], color=c, marker='o', label=key.replace("val_", ""), linewidth=4)
        metrics.set(ylim=[0, 1.02]), metrics.set_xlabel("epoch"), metrics.set_ylabel("validation metric")
        metrics.legend(loc=(0, 1), ncol=5)
        plt.tight_layout()
        fig.savefig(join(output_folder, TASKS_PNG))
        plt.close(fig)
