"""nnU-Net's DDP path on the CPU: two processes (torch.distributed, gloo) train a few iterations of the budget
trainer on the session's phantom data and end with identical weights and the same epoch count, decided on rank 0
although each rank's own clock would decide differently (tests/ddp_trainers)."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from conftest import MULTISPINE_ID

TRAINER = "VertebraFormerTrainer_budget_ddpTest"


def test_two_cpu_ranks_end_in_step(multispine_preprocessed, tmp_path, monkeypatch):
    from vertebraformer_nn.trainers.ddp_launch import run_ddp_training

    dataset_name, plans = multispine_preprocessed
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_extTrainer", str(Path(__file__).parent / "ddp_trainers"))
    t0 = time.monotonic()
    run_ddp_training(str(MULTISPINE_ID), 0, 2, trainer=TRAINER, plans=plans, device="cpu", validate=False,
                     timeout_s=600)
    print(f"two-rank DDP training: {time.monotonic() - t0:.1f} s")
    folder = tmp_path / dataset_name / f"{TRAINER}__{plans}__3d_fullres" / "fold_0"
    ranks = [torch.load(folder / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and {r["device"] for r in ranks} == {"cpu"}
    assert [r["num_epochs"] for r in ranks] == [3, 3] and [r["current_epoch"] for r in ranks] == [3, 3]
    assert [r["batch_size"] for r in ranks] == [1, 1]  # the plans' batch of 2, one sample per rank
    assert ranks[0]["weights"].keys() == ranks[1]["weights"].keys()
    differ = [k for k, v in ranks[0]["weights"].items() if not torch.equal(v, ranks[1]["weights"][k])]
    assert not differ, differ[:5]
    final = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert final["current_epoch"] == 3 and len(final["logging"]["train_losses"]) == 3
    assert all(torch.equal(v, ranks[0]["weights"][k]) for k, v in final["network_weights"].items())


def test_cli_checks_the_fold_before_spawning_ranks(multispine_preprocessed, capsys):
    from vertebraformer_nn.cli import main

    assert main(["train", str(MULTISPINE_ID), "99", "-num_gpus", "2", "-device", "cpu"]) == 2
    assert "fold 99 does not exist" in capsys.readouterr().err
    assert main(["train", str(MULTISPINE_ID), "0", "-num_gpus", "2", "-device", "cpu", "-tr", "NoSuchTrainer"]) == 2
    assert "unknown trainer 'NoSuchTrainer'" in capsys.readouterr().err
    assert main(["train", str(MULTISPINE_ID), "0", "-num_gpus", "0"]) == 2
