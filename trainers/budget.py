"""``VertebraFormerTrainer_budget``: train for a wall-clock budget instead of a fixed number of epochs.

The budget (seconds) comes from ``$VERTEBRAFORMER_TRAIN_BUDGET_S`` when the trainer is built (default
:data:`DEFAULT_BUDGET_S`), or from the ``time_budget_s`` attribute set before ``run_training`` (the demo does
this). The clock starts when ``run_training`` starts, so data-loader start-up counts too. After the first epoch of
the run the trainer measures how long an epoch takes and sets ``num_epochs`` to what fits in the rest of the
budget (never more than the full schedule's 1000); after every later epoch it sets it again from the mean time
of the epochs since the second (the first carries one-time costs: worker start-up, first batches), both ways: a
machine busy early (a first estimate too short) no longer ends the run minutes before its budget, and one that
slows down still meets the deadline. The learning-rate schedule (:func:`schedule.lr_at`, or nnU-Net's poly
decay) is a function of the epoch and the epoch count, so changing the count just stretches or squeezes the
decay; warm-up is shortened to :data:`WARMUP_FRACTION` of a short run. A resumed run (``--c``) gets a fresh
budget for the epochs it still trains.

nnU-Net's ``run_training`` runs its loop over ``range(current_epoch, num_epochs)``, fixed when the loop starts (at
the full schedule's count, the most a budget may give); ``on_epoch_start`` ends that loop once the fitted count is
reached (:class:`BudgetSpent`), and ``run_training`` then finishes as nnU-Net's does (``on_train_end``).

An epoch budget instead (``$VERTEBRAFORMER_TRAIN_EPOCHS``, or the ``epoch_budget`` attribute): exactly that many
epochs, the schedule stretched to them from the start, the clock not consulted. What a run learns then depends on
the iterations, not on the machine: the protocol benchmark's models, which a budget of minutes trained 3-4 times
less on a slower machine, use it.

Under DDP the count is fitted on rank 0 and broadcast (:func:`ddp.broadcast_from_rank0`): ranks that each fitted
from their own clock could disagree, and one would wait forever for the others' next epoch.
"""
from __future__ import annotations

from time import time
from typing import List, Optional

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .ddp import DDPAnyDeviceMixin, broadcast_from_rank0
from .environment import positive_from_env
from .vertebraformer_trainer import VertebraFormerTrainer

BUDGET_ENV = "VERTEBRAFORMER_TRAIN_BUDGET_S"
EPOCHS_ENV = "VERTEBRAFORMER_TRAIN_EPOCHS"
DEFAULT_BUDGET_S = 600.0
#: seconds kept back for the final checkpoint and the data-loader shutdown after the last epoch
END_RESERVE_S = 5.0
#: warm-up epochs of a budgeted run: this fraction of its epochs, at least 1, at most the schedule's
WARMUP_FRACTION = 0.075


def budget_from_env(default: float = DEFAULT_BUDGET_S) -> float:
    budget = positive_from_env(BUDGET_ENV, "number of seconds")
    return float(default) if budget is None else budget


def epochs_from_env() -> Optional[int]:
    """The epoch budget of ``$VERTEBRAFORMER_TRAIN_EPOCHS`` (None when unset: the time budget applies)."""
    return positive_from_env(EPOCHS_ENV, "whole number of epochs", int)


def epochs_within_budget(start_epoch: int, epochs_done: int, seconds_per_epoch: float, elapsed_s: float,
                         budget_s: float, max_epochs: int, reserve_s: float = END_RESERVE_S) -> int:
    """The total epoch count (counted from epoch 0 of the whole training) that ends within ``budget_s``:
    ``epochs_done`` epochs of this run are finished after ``elapsed_s`` seconds, each took ``seconds_per_epoch``.
    Never fewer than the epochs done, never more than ``max_epochs``."""
    done = start_epoch + epochs_done
    left = budget_s - elapsed_s - reserve_s
    more = int(left // seconds_per_epoch) if left > 0 and seconds_per_epoch > 0 else 0
    return int(max(done, min(max_epochs, done + more)))


def warmup_for(num_epochs: int, configured: int, fraction: float = WARMUP_FRACTION) -> int:
    """Warm-up epochs for a run of ``num_epochs``: ``fraction`` of it, at least 1, at most ``configured``."""
    return int(max(1, min(configured, round(fraction * num_epochs))))


class BudgetSpent(Exception):
    """Raised by ``on_epoch_start`` when the fitted epoch count is reached: ends nnU-Net's epoch loop."""


class TimeBudgetMixin:
    """The wall-clock budget for any nnU-Net trainer (module docstring); put it first among the bases. The
    trainer class says how a new epoch count reaches its learning-rate schedule (``_schedule_epochs``)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.max_epochs = int(self.num_epochs)
        self.time_budget_s: float = budget_from_env()
        self.epoch_budget: Optional[int] = epochs_from_env()  # set: exactly this many epochs, no clock
        self._run_t0: Optional[float] = None
        self._epoch_starts: List[float] = []  # start times of this run's epochs
        self._run_start_epoch = 0

    def run_training(self):
        self._run_t0 = time()
        self._run_start_epoch = int(self.current_epoch)
        self._epoch_starts = []
        if self.epoch_budget is not None:
            # before nnU-Net's loop and the scheduler (on_train_start) are made, which both read num_epochs
            self.num_epochs = int(min(self.max_epochs, self.epoch_budget))
            self.print_to_log_file(f"Epoch budget: {self.num_epochs} epochs of {self.num_iterations_per_epoch} "
                                   "iterations (no time budget)")
        else:
            self.print_to_log_file(f"Time budget: {self.time_budget_s:.0f} s of training (the epoch count is set "
                                   "after the first epoch)")
        try:
            super().run_training()  # nnU-Net's loop; it ends by itself only when the budget gives max_epochs
        except BudgetSpent:
            self.on_train_end()

    def on_train_start(self):
        super().on_train_start()
        if self.epoch_budget is not None:
            self._schedule_epochs(int(self.num_epochs))  # a short run's warm-up, as a fitted count gets it

    def on_epoch_start(self):
        if self._run_t0 is not None and self.current_epoch >= self.num_epochs:
            raise BudgetSpent(self.current_epoch)
        self._epoch_starts.append(time())
        super().on_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()  # increments current_epoch
        if self._run_t0 is not None and self.epoch_budget is None:
            self.fit_epochs_to_budget(time())

    def fit_epochs_to_budget(self, now: float) -> None:
        """Set ``num_epochs`` after every epoch of the run from the time the epochs took, so the run ends within
        the budget (module docstring)."""
        done = int(self.current_epoch) - self._run_start_epoch
        if done < 1:
            return
        # the first epoch carries one-time costs: from the second on, time the epochs after it
        since = self._epoch_starts[0] if done == 1 else self._epoch_starts[1]
        per_epoch = (now - since) / (done if done == 1 else done - 1)
        elapsed = now - self._run_t0
        fit = broadcast_from_rank0(epochs_within_budget(self._run_start_epoch, done, per_epoch, elapsed,
                                                        self.time_budget_s, self.max_epochs))
        if done <= 2 or fit != self.num_epochs:
            late = fit < self.num_epochs and done > 2
            self._set_num_epochs(fit)
            self.print_to_log_file(
                f"Time budget: {elapsed:.0f} s used, {per_epoch:.1f} s per epoch -> {self.num_epochs} epochs in "
                f"{self.time_budget_s:.0f} s" + (" (running late)" if late else ""))

    def _set_num_epochs(self, n: int) -> None:
        self.num_epochs = int(n)
        self._schedule_epochs(int(n))

    def _schedule_epochs(self, n: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} must say how {n} epochs reach its learning-rate schedule")


class VertebraFormerTrainer_budget(TimeBudgetMixin, VertebraFormerTrainer):
    """As many epochs of 50 iterations as fit in a wall-clock budget (module docstring): the schedule of
    ``vertebraformer demo`` and of the benchmark. Peak rate 2e-3, twice ``_CPU20min``'s: a run of minutes must
    leave the early all-background phase fast. Measured on 2 CPU cores, 8 minutes (15 epochs), the benchmark's
    fold 0 (6 phantoms per source): the patch validation left the background phase after 3 epochs (1e-3: 7),
    and the 3 whole validation cases scored Dice 16.9 %, binary Dice 68.1 %, identification rate 29.6 % (1e-3:
    2.0 %, 47.5 %, 3.7 %)."""

    SCHEDULE = dict(num_epochs=1000, num_iterations_per_epoch=50, num_val_iterations_per_epoch=4, warmup_epochs=3,
                    initial_lr=2e-3, save_every=5)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.configured_warmup = int(self.warmup_epochs)

    def _schedule_epochs(self, n: int) -> None:
        scheduler = self.lr_scheduler
        scheduler.max_epochs = n
        scheduler.warmup_epochs = int(max(0, min(warmup_for(n, self.configured_warmup), n - 1)))


class nnUNetTrainer_budget(TimeBudgetMixin, DDPAnyDeviceMixin, nnUNetTrainer):
    """nnU-Net's default trainer (its 3D U-Net, SGD at 1e-2 with poly decay, its augmentation and loss) for a
    wall-clock budget: the baseline of the benchmark, trained for the same time as VertebraFormer. Only the epoch
    length differs from ``nnUNetTrainer``: 10 training and 2 validation iterations, so that the epoch count can be
    fitted to a budget of minutes (a training step of nnU-Net's default U-Net takes about 5 s on two CPU cores:
    one of its 250-iteration epochs alone would take 20 minutes). The poly decay runs over the fitted epochs."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 10
        self.num_val_iterations_per_epoch = 2

    def _schedule_epochs(self, n: int) -> None:
        self.lr_scheduler.max_steps = n  # nnU-Net's PolyLRScheduler: lr = initial * (1 - epoch / max_steps) ** 0.9
