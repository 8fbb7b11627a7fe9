"""Short-schedule variants of VertebraFormerTrainer (tests, the CPU demo). Each is its own nnU-Net trainer name,
so each trains into its own results folder ``<Trainer>__<Plans>__<config>``. They change only the schedule
(``SCHEDULE``, applied by VertebraFormerTrainer.__init__), so they keep nnU-Net's constructor signature."""
from __future__ import annotations

from .vertebraformer_trainer import VertebraFormerTrainer


class VertebraFormerTrainer_tiny(VertebraFormerTrainer):
    """2 epochs x 3 iterations, 1 validation iteration: the end-to-end test schedule (CPU, ~a minute)."""

    SCHEDULE = dict(num_epochs=2, num_iterations_per_epoch=3, num_val_iterations_per_epoch=1, warmup_epochs=1,
                    initial_lr=1e-3, save_every=1)


class VertebraFormerTrainer_CPU5min(VertebraFormerTrainer):
    """About 5 minutes of training on 2 idle CPU cores at the CPU preset (a quick learning-curve check; a step
    of batch 2 at 88x56x48 takes about 0.7 s there): 8 epochs x 40 iterations."""

    SCHEDULE = dict(num_epochs=8, num_iterations_per_epoch=40, num_val_iterations_per_epoch=4, warmup_epochs=1,
                    initial_lr=5e-4, save_every=5)


class VertebraFormerTrainer_CPU20min(VertebraFormerTrainer):
    """The 20-minute CPU run (2 idle cores with bfloat16 instructions, CPU preset): 40 epochs x 50 iterations,
    4 validation iterations each, 3 warm-up epochs to a peak rate of 1e-3. Chosen on a GPU with the same
    iterations (fold 0 of 6 phantoms per source, binary spine Dice on the validation cases): 25 epochs at 5e-4
    0.40, at 1e-3 0.77; 30 epochs at 1e-3 0.79; 40 epochs at 1e-3 0.82 and 0.82 (two runs), at 2e-3 0.83.
    Without bfloat16 instructions, or on a busy machine, it takes longer."""

    SCHEDULE = dict(num_epochs=40, num_iterations_per_epoch=50, num_val_iterations_per_epoch=4, warmup_epochs=3,
                    initial_lr=1e-3, save_every=5)


class VertebraFormerTrainer_smoke(VertebraFormerTrainer):
    """1 epoch x 2 iterations: checks that a command runs at all (e.g. stock nnUNetv2_train through the shim)."""

    SCHEDULE = dict(VertebraFormerTrainer_tiny.SCHEDULE, num_epochs=1, num_iterations_per_epoch=2)
