"""The child processes of ``multispine_protocol.py`` (each runs in a process of its own, so that the protocol
measures its time and peak memory): training one model, every input's probabilities, per-patch latency.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict

from protocol_setup import CONFIGURATION, log


def _trainer(dataset: str, fold: int, configuration: str, trainer_name: str, plans: str, device: str):
    """The trainer of one model, built as ``vertebraformer train`` builds it, with every core on the CPU."""
    import torch

    from vertebraformer_nn.trainers.build import build_trainer

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    return build_trainer(dataset, fold, configuration, trainer_name, plans, device)


def _predictor(model_folder: str, fold: int, device: str):
    """The predictor of ``predict`` on one fold of ``model_folder``, with every core on the CPU."""
    import torch

    from vertebraformer_nn.inference.predictor import VertebraFormerPredictor

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    predictor = VertebraFormerPredictor(device=device)
    predictor.initialize_from_trained_model_folder(model_folder, [fold])
    return predictor


def child_train(dataset: str, fold: int, trainer_name: str, plans: str, device: str,
                configuration: str = CONFIGURATION, pretrained: str = "") -> None:
    """Train one model of ``configuration`` for the budget, as ``vertebraformer train DATASET FOLD -c
    CONFIGURATION [-pretrained_weights PRETRAINED]`` would (no final validation: the benchmark predicts and
    evaluates itself); writes fold_<f>/training_summary.json (epochs, iterations, seconds, the weights it started
    from)."""
    from vertebraformer_nn.trainers.checkpoints import start_from_pretrained
    from vertebraformer_nn.trainers.cli import pretrained_path

    trainer = _trainer(dataset, fold, configuration, trainer_name, plans, device)
    start = pretrained_path(pretrained, configuration) if pretrained else None
    if start:
        start_from_pretrained(trainer, start)
    t0 = time.time()
    trainer.run_training()
    summary = {"train_seconds": time.time() - t0, "epochs": int(trainer.current_epoch),
               "iterations": int(trainer.current_epoch) * int(trainer.num_iterations_per_epoch),
               "batch_size": int(trainer.batch_size), "patch_size": list(trainer.configuration_manager.patch_size),
               "pretrained": start, "initial_lr": float(trainer.initial_lr)}
    Path(trainer.output_folder, "training_summary.json").write_text(json.dumps(summary, indent=1))


def child_speed(dataset: str, fold: int, trainer_name: str, plans: str, device: str, configuration: str,
                target: str, steps: int = 4) -> None:
    """Seconds per training iteration of ``trainer_name`` on ``configuration``: the trainer set up as for training
    (its data loaders, augmentation and network), then ``steps`` of its own ``train_step`` on loader batches after
    one warm-up; the median goes to ``target`` (JSON). No checkpoint is written: the fold's training starts from
    scratch later. The time plan multiplies it by the iterations of an epoch (protocol_plan.Costs)."""
    import statistics

    trainer = _trainer(dataset, fold, configuration, trainer_name, plans, device)
    trainer.on_train_start()
    trainer.network.train()
    times = []
    try:
        for i in range(steps + 1):
            t0 = time.perf_counter()
            trainer.train_step(next(trainer.dataloader_train))
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        for loader in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
    result = {"seconds_per_iteration": statistics.median(times), "steps": times,
              "iterations_per_epoch": int(trainer.num_iterations_per_epoch), "configuration": configuration,
              "batch_size": int(trainer.batch_size), "patch_size": list(trainer.configuration_manager.patch_size)}
    Path(target).write_text(json.dumps(result, indent=1))
    log(f"{trainer_name} on {configuration}: {result['seconds_per_iteration']:.2f} s per training iteration")


def child_probabilities(model_folder: str, fold: int, inputs: str, target: str, device: str) -> None:
    """Every input's probabilities (``<case>_vfprobs.npz``, as ``predict --save_probabilities`` stores them) and
    per-case seconds (seconds.json), through the same predictor as ``predict``, without the vertebra export."""
    from vertebraformer_nn.inference import probabilities as P
    from vertebraformer_nn.inference.cases import discover_cases

    predictor = _predictor(model_folder, fold, device)
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in discover_cases(inputs).cases:
        seconds: Dict[str, float] = {}
        t0 = time.perf_counter()
        path = P.probabilities_file(out, case.name)
        _, probs, meta = predictor.predict_case(case, seconds, keep=path)
        P.save(path, probs, meta)
        seconds["total"] = time.perf_counter() - t0
        rows.append({"case": case.name, **seconds})
        log(f"{case.name}: {seconds['total']:.1f} s")
    (out / "seconds.json").write_text(json.dumps(rows, indent=1))


def child_latency(model_folder: str, fold: int, device: str) -> None:
    """Parameters and per-patch forward latency (batch 1, eval mode, no_grad, median of 5 after 2 warm-ups) of a
    trained network at its own planned patch, with the precision its predictor uses."""
    import statistics

    import torch

    predictor = _predictor(model_folder, fold, device)
    net = predictor.network.to(device).eval()
    patch = list(predictor.configuration_manager.patch_size)
    x = torch.randn(1, 1, *patch, device=device)
    times = []
    with torch.no_grad():
        for i in range(7):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            net(x)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    result = {"parameters_m": sum(p.numel() for p in net.net.parameters()) / 1e6, "patch_size": patch,
              "forward_ms": 1000 * statistics.median(times), "bf16": bool(predictor.bf16),
              "trainer": predictor.trainer_name}
    Path(model_folder, f"fold_{fold}", "latency.json").write_text(json.dumps(result, indent=1))
