"""nnU-Net's LocalLogger with the per-task keys and two more panels in ``progress.png``.

``LocalLogger.log`` asserts that a key is one of its predefined lists and wants exactly one value per epoch;
the keys below are added to that dict, and the trainer logs each of them once per epoch (NaN when an epoch
had nothing to score, e.g. no lesion-annotated validation patch). Values are stored as plain Python floats so
that the checkpoint's ``logging`` entry loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from numbers import Number

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join

from nnunetv2.training.logging.nnunet_logger import LocalLogger

TASK_LOSSES = ("seg", "id", "lesion", "domain")
TRAIN_LOSS_KEYS = tuple(f"train_loss_{t}" for t in TASK_LOSSES)
VAL_LOSS_KEYS = tuple(f"val_loss_{t}" for t in TASK_LOSSES)
METRIC_KEYS = ("val_spine_dice", "val_id_accuracy", "val_lesion_dice", "val_domain_accuracy")
EXTRA_KEYS = TRAIN_LOSS_KEYS + VAL_LOSS_KEYS + METRIC_KEYS


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
        import matplotlib

        matplotlib.use("agg")
        import matplotlib.pyplot as plt

        log = self.my_fantastic_logging
        epoch = min(len(v) for v in log.values()) - 1
        if epoch < 0:
            return
        x = list(range(epoch + 1))
        fig, ax_all = plt.subplots(5, 1, figsize=(30, 80))
        # 1-3: nnU-Net's three panels (same content, so users find what they know)
        ax = ax_all[0]
        ax2 = ax.twinx()
        ax.plot(x, log['train_losses'][:epoch + 1], color='b', label="loss_tr", linewidth=4)
        ax.plot(x, log['val_losses'][:epoch + 1], color='r', label="loss_val", linewidth=4)
        ax2.plot(x, log['mean_fg_dice'][:epoch + 1], color='g', ls='dotted', label="pseudo dice", linewidth=3)
        ax2.plot(x, log['ema_fg_dice'][:epoch + 1], color='g', label="pseudo dice (mov. avg.)", linewidth=4)
        ax.set_xlabel("epoch"), ax.set_ylabel("total loss"), ax2.set_ylabel("pseudo dice")
        ax.legend(loc=(0, 1)), ax2.legend(loc=(0.2, 1))
        ax = ax_all[1]
        ax.plot(x, [e - s for e, s in zip(log['epoch_end_timestamps'][:epoch + 1],
                                          log['epoch_start_timestamps'][:epoch + 1])], color='b',
                label="epoch duration", linewidth=4)
        ax.set(ylim=[0, ax.get_ylim()[1]]), ax.set_xlabel("epoch"), ax.set_ylabel("time [s]"), ax.legend(loc=(0, 1))
        ax = ax_all[2]
        ax.plot(x, log['lrs'][:epoch + 1], color='b', label="learning rate", linewidth=4)
        ax.set_xlabel("epoch"), ax.set_ylabel("learning rate"), ax.legend(loc=(0, 1))
        # 4: per-task losses
        ax = ax_all[3]
        colors = dict(seg='b', id='m', lesion='r', domain='g')
        for t in TASK_LOSSES:
            ax.plot(x, log[f"train_loss_{t}"][:epoch + 1], color=colors[t], label=f"train {t}", linewidth=4)
            ax.plot(x, log[f"val_loss_{t}"][:epoch + 1], color=colors[t], ls='dotted', label=f"val {t}", linewidth=4)
        ax.set_xlabel("epoch"), ax.set_ylabel("loss per task"), ax.legend(loc=(0, 1), ncol=4)
        # 5: per-task validation metrics
        ax = ax_all[4]
        for key, c in zip(METRIC_KEYS, ('b', 'm', 'r', 'g')):
            ax.plot(x, log[key][:epoch + 1], color=c, marker='o', label=key.replace("val_", ""), linewidth=4)
        ax.set(ylim=[0, 1.02]), ax.set_xlabel("epoch"), ax.set_ylabel("validation metric"), ax.legend(loc=(0, 1), ncol=4)
        plt.tight_layout()
        fig.savefig(join(output_folder, "progress.png"))
        plt.close(fig)
