"""CPU speed of VertebraFormer (cpu preset) vs nnU-Net's default 3D U-Net on the same patch, side by side.

    python benchmarks/network_speed.py [--patch 64 64 64] [--threads 2] [--preset cpu] [--classes 27]

Each network is measured in its own subprocess (so that peak RSS is its own): parameters, forward latency
(eval, no_grad) at batch 1 and 2, and a training-step time at batch 2 (forward, loss, backward, optimizer
step), each the median of a few repeats after a warm-up.

* VertebraFormer: all heads on; the step uses the multi-task loss (Dice+CE on seg, CE on id over vertebra
  voxels, BCE on lesion, CE on the domain logits) and AdamW, as our trainer will.
* nnU-Net default: PlainConvUNet exactly as nnU-Net's default ExperimentPlanner configures 3d_fullres for this
  patch at isotropic spacing (topology from nnunetv2's get_pool_and_conv_props: strides 1,2,2,2,2 for 64^3,
  features 32..320, kernel 3, 2 convs per stage, InstanceNorm, LeakyReLU); the step uses deep supervision
  with nnU-Net's DC_and_CE_loss in DeepSupervisionWrapper and SGD (momentum 0.99, nesterov), as
  nnUNetTrainer does. Its forward is timed without deep supervision (what the predictor builds).

Peak RSS is the worker process' maximum resident set (including the ~0.4 GB of torch and imports; the
post-import baseline is shown too). Not a test: a script for the note.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _median_time(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _build(name: str, patch, classes: int, preset: str):
    import torch

    if name == "vertebraformer":
        from vertebraformer_nn.network import VertebraFormer

        net = VertebraFormer(1, classes, patch_size=patch, token_size=(8, 8, 8), preset=preset)
        return net, None
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, pool, kernels, _, _ = get_pool_and_conv_props([1.0, 1.0, 1.0], list(patch), 4, 999999)
    n_stages = len(pool)
    kwargs = dict(
        input_channels=1,
        n_stages=n_stages,
        features_per_stage=[min(32 * 2**i, 320) for i in range(n_stages)],
        conv_op=torch.nn.Conv3d,
        kernel_sizes=[list(k) for k in kernels],
        strides=[list(s) for s in pool],
        n_conv_per_stage=[2] * n_stages,
        num_classes=classes,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
        conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
    )
    infer = PlainConvUNet(**kwargs, deep_supervision=False)
    infer.apply(PlainConvUNet.initialize)
    train = PlainConvUNet(**kwargs, deep_supervision=True)
    train.apply(PlainConvUNet.initialize)
    return infer, (train, pool)


def worker(name: str, patch, classes: int, threads: int, preset: str) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    baseline = _rss_mb()
    net, extra = _build(name, patch, classes, preset)
    params = sum(p.numel() for p in net.parameters())
    dc_ce = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                           weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)  # as nnUNetTrainer

    x1 = torch.randn(1, 1, *patch)
    x2 = torch.randn(2, 1, *patch)
    seg_t = torch.randint(0, classes, (2, 1, *patch))

    net.eval()
    with torch.no_grad():
        fwd1 = _median_time(lambda: net(x1), repeats=7, warmup=3)
        fwd2 = _median_time(lambda: net(x2), repeats=7, warmup=3)

    if name == "vertebraformer":
        from vertebraformer_nn.network import all_heads

        train_net = net.train()
        opt = torch.optim.AdamW(train_net.parameters(), lr=3e-4, weight_decay=5e-2)
        lesion_t = (torch.rand(2, 1, *patch) > 0.95).float()
        domain_t = torch.tensor([0, 1])

        def step():
            opt.zero_grad(set_to_none=True)
            with all_heads(train_net):
                out = train_net(x2)
            id_t = torch.where(seg_t[:, 0] > 0, seg_t[:, 0] - 1, torch.full_like(seg_t[:, 0], -100))
            loss = (dc_ce(out["seg"], seg_t) + F.cross_entropy(out["id"], id_t, ignore_index=-100)
                    + F.binary_cross_entropy_with_logits(out["lesion"], lesion_t)
                    + F.cross_entropy(out["domain_logits"], domain_t))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(train_net.parameters(), 1.0)
            opt.step()
    else:
        train_net, pool = extra
        train_net.train()
        opt = torch.optim.SGD(train_net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        scales = list(list(i) for i in 1 / np.cumprod(np.vstack(pool), axis=0))[:-1]
        weights = np.array([1 / (2**i) for i in range(len(scales))])
        weights[-1] = 0
        loss_fn = DeepSupervisionWrapper(dc_ce, weights / weights.sum())
        targets = [seg_t if s == [1.0, 1.0, 1.0] else
                   F.interpolate(seg_t.float(), scale_factor=s, mode="nearest-exact").long() for s in scales]

        def step():
            opt.zero_grad(set_to_none=True)
            out = train_net(x2)
            loss = loss_fn(out, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(train_net.parameters(), 12)
            opt.step()

    train_step = _median_time(step, repeats=3, warmup=1)
    return {
        "name": name,
        "params": params,
        "fwd_b1_s": fwd1,
        "fwd_b2_s": fwd2,
        "train_step_b2_s": train_step,
        "rss_baseline_mb": baseline,
        "rss_peak_mb": _rss_mb(),
        "feature_map_estimate": int(net.compute_conv_feature_map_size(list(patch))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--classes", type=int, default=27)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, tuple(args.patch), args.classes, args.threads, args.preset)))
        return

    load_before = os.getloadavg()
    rows = []
    for name in ("vertebraformer", "nnunet_default"):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--patch", *map(str, args.patch),
               "--threads", str(args.threads), "--preset", args.preset, "--classes", str(args.classes)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            sys.exit(f"{name} worker failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(line[-1][len("RESULT "):]))

    ours, unet = rows
    print(f"patch {args.patch}, {args.classes} classes, {args.threads} CPU thread(s), "
          f"VertebraFormer preset {args.preset!r}, "
          f"load average (1 min) before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    header = f"{'':<30}{'VertebraFormer (' + args.preset + ')':>24}{'nnU-Net default 3D U-Net':>28}{'ratio':>9}"
    print(header)
    print("-" * len(header))

    def row(label, key, fmt, scale=1.0):
        a, b = ours[key] * scale, unet[key] * scale
        print(f"{label:<30}{format(a, fmt):>24}{format(b, fmt):>28}{a / b:>9.3f}")

    row("parameters (M)", "params", ".2f", 1e-6)
    row("forward, batch 1 (ms)", "fwd_b1_s", ".0f", 1e3)
    row("forward, batch 2 (ms)", "fwd_b2_s", ".0f", 1e3)
    row("training step, batch 2 (ms)", "train_step_b2_s", ".0f", 1e3)
    row("peak RSS (MB)", "rss_peak_mb", ".0f")
    row("RSS after imports (MB)", "rss_baseline_mb", ".0f")
    row("feature-map estimate (M el.)", "feature_map_estimate", ".1f", 1e-6)
    ratio = ours["fwd_b2_s"] / unet["fwd_b2_s"]
    print(f"forward ratio (batch 2): {ratio:.3f} -> target <= 1/3: {'met' if ratio <= 1 / 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
