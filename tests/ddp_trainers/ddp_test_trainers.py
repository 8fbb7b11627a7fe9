"""A trainer for the two-process DDP test (tests/test_ddp.py), found by each rank the way nnU-Net finds external
trainers: this folder is on ``nnUNet_extTrainer``."""
import os

import torch

from vertebraformer_nn.trainers.budget import VertebraFormerTrainer_budget


class VertebraFormerTrainer_budget_ddpTest(VertebraFormerTrainer_budget):
    """The budget trainer at most 3 epochs of 2 iterations. Every rank but 0 reads a clock 10^6 s ahead: fitting the
    epoch count on each rank would stop rank 1 after its first epoch while rank 0 runs all 3 (and waits for rank 1
    forever). Each rank writes its final weights and counts to ``rank<r>.pt``."""

    SCHEDULE = dict(VertebraFormerTrainer_budget.SCHEDULE, num_epochs=3, num_iterations_per_epoch=2,
                    num_val_iterations_per_epoch=1, save_every=1)

    def fit_epochs_to_budget(self, now: float) -> None:
        super().fit_epochs_to_budget(now + 1e6 * self.local_rank)

    def on_train_end(self):
        super().on_train_end()
        torch.save({"weights": self._plain_module().state_dict(), "current_epoch": self.current_epoch,
                    "num_epochs": self.num_epochs, "batch_size": self.batch_size, "device": str(self.device),
                    "world_size": torch.distributed.get_world_size()},
                   os.path.join(self.output_folder, f"rank{self.local_rank}.pt"))
