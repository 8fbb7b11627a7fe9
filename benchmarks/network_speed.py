"""Speed of VertebraFormer vs nnU-Net's default 3D U-Net planned on the same dataset, side by side (CPU or GPU).

    python benchmarks/network_speed.py -d 501 [--threads 2]          # needs the dataset planned with --preset cpu
    python benchmarks/network_speed.py --patch 88 56 48 [--threads 2]  # no dataset: both built for this patch
    python benchmarks/network_speed.py --patch 128 128 128 --preset base --device cuda   # a GPU preset on a GPU

With a dataset (``$nnUNet_preprocessed/Dataset<ID>_*/VertebraFormerCPUPlans.json`` present):

* ours: the network of our CPU plans (its arch_kwargs), at our planned patch;
* nnU-Net: nnU-Net's own default ``ExperimentPlanner`` run on the same dataset fingerprint with the target
  spacing of our CPU plans (``overwrite_target_spacing``, as ``nnUNetv2_plan_experiment
  -overwrite_target_spacing`` does), so both see the same input; its 3d_fullres architecture is built with
  ``get_network_from_plans`` exactly as nnUNetTrainer builds it (plans are kept in memory, nothing is written);
* "same input size": both networks are measured at nnU-Net's planned patch (ours is rebuilt for that patch:
  our positional embeddings are sized by the patch), and ours also at its own patch.

Each measurement runs in its own subprocess (peak RSS is its own): parameters, forward latency (eval, no_grad)
at batch 1 and 2, and a training step at batch 2 (forward, loss, backward, optimizer step), each the median of
a few repeats after a warm-up, in float32 and in bfloat16 autocast (what our trainer uses on a CPU with bf16
instructions, vertebraformer_nn/precision.py; nnU-Net's trainer runs float32 on the CPU).

* ours: all heads on; the step uses the multi-task loss (Dice+CE on seg, CE on id over vertebra voxels, BCE on
  lesion, CE on the domain logits) and AdamW, as our trainer does.
* nnU-Net: deep supervision with nnU-Net's DC_and_CE_loss in DeepSupervisionWrapper and SGD (momentum 0.99,
  nesterov), as nnUNetTrainer does; its forward is timed without deep supervision (what the predictor runs).

Peak RSS is the worker's maximum resident set (including ~0.5 GB of torch and imports; the post-import
baseline is shown too). Not a test: a script whose table goes into the notes.

``--device cuda``: the same measurements on the GPU, with a synchronisation inside each timed call; the mixed
precision is float16 autocast (what both trainers and predictors use on CUDA, ``vertebraformer_nn.precision``),
and the peak GPU memory (``torch.cuda.max_memory_allocated``) is shown beside the RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_CLASSES = 27


def _median_time(fn, repeats: int, warmup: int, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()  # a GPU call returns before its kernels end
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ---------------------------------------------------------------------------------------------- planning
def planned_specs(dataset_id: int) -> dict:
    """Our CPU plans and nnU-Net's default plans at the same spacing: {"ours": {...}, "unet": {...}, ...}."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset_id)
    ours_file = Path(nnUNet_preprocessed) / name / "VertebraFormerCPUPlans.json"
    if not ours_file.is_file():
        sys.exit(f"{ours_file} not found: run `vertebraformer plan-and-preprocess -d {dataset_id} --preset cpu` first")
    ours = json.loads(ours_file.read_text())["configurations"]["3d_fullres"]

    class InMemoryPlanner(ExperimentPlanner):
        def save_plans(self, plans):  # keep the user's preprocessed folder untouched
            self.plans = plans

    planner = InMemoryPlanner(dataset_id, plans_name="nnUNetPlans_speedbench",
                              overwrite_target_spacing=list(ours["spacing"]))
    planner.plan_experiment()
    unet = planner.plans["configurations"]["3d_fullres"]
    # numpy scalars and arrays -> plain JSON values (the specs travel to the workers as JSON)
    unet = json.loads(json.dumps(unet, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return {"dataset": name, "ours": ours, "unet": unet}


# ---------------------------------------------------------------------------------------------- workers
def _build(spec: dict):
    import torch

    patch = tuple(spec["patch"])
    if spec["kind"] == "vertebraformer":
        from vertebraformer_nn.network import VertebraFormer

        kwargs = dict(spec["arch_kwargs"], patch_size=list(patch))
        return VertebraFormer(1, NUM_CLASSES, **kwargs), None
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = spec["architecture"]
    build = dict(arch_class_name=arch["network_class_name"], arch_kwargs=arch["arch_kwargs"],
                 arch_kwargs_req_import=arch["_kw_requires_import"], input_channels=1, output_channels=NUM_CLASSES,
                 allow_init=True)
    torch.manual_seed(0)
    infer = get_network_from_plans(**build, deep_supervision=False)
    train = get_network_from_plans(**build, deep_supervision=True)
    return infer, (train, arch["arch_kwargs"]["strides"])


def worker(spec: dict) -> dict:
    import contextlib

    import numpy as np
    import torch
    import torch.nn.functional as F
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    patch = tuple(spec["patch"])
    device = torch.device(spec.get("device", "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnU-Net's trainer and predictor set it
    baseline = _rss_mb()
    net, extra = _build(spec)
    net = net.to(device)
    if extra is not None:
        extra = (extra[0].to(device), extra[1])
    params = sum(p.numel() for p in net.parameters())
    dc_ce = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                           weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)  # as nnUNetTrainer

    def precision():
        if spec["amp"]:  # the mixed precision of the device: bfloat16 on a CPU, float16 on CUDA
            return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
        return contextlib.nullcontext()

    x1 = torch.randn(1, 1, *patch, device=device)
    x2 = torch.randn(2, 1, *patch, device=device)
    seg_t = torch.randint(0, NUM_CLASSES, (2, 1, *patch), device=device)

    net.eval()
    with torch.no_grad(), precision():
        fwd1 = _median_time(lambda: net(x1), repeats=7, warmup=3, sync=sync)
        fwd2 = _median_time(lambda: net(x2), repeats=7, warmup=3, sync=sync)

    if spec["kind"] == "vertebraformer":
        from vertebraformer_nn.network import all_heads

        train_net = net.train()
        opt = torch.optim.AdamW(train_net.parameters(), lr=3e-4, weight_decay=5e-2)
        lesion_t = (torch.rand(2, 1, *patch, device=device) > 0.95).float()
        domain_t = torch.tensor([0, 1], device=device)

        def step():
            opt.zero_grad(set_to_none=True)
            with precision(), all_heads(train_net):
                out = train_net(x2)
            out = {k: v.float() for k, v in out.items() if v is not None}
            id_t = torch.where(seg_t[:, 0] > 0, seg_t[:, 0] - 1, torch.full_like(seg_t[:, 0], -100))
            loss = (dc_ce(out["seg"], seg_t) + F.cross_entropy(out["id"], id_t, ignore_index=-100)
                    + F.binary_cross_entropy_with_logits(out["lesion"], lesion_t)
                    + F.cross_entropy(out["domain_logits"], domain_t))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(train_net.parameters(), 1.0)
            opt.step()
    else:
        train_net, strides = extra
        train_net.train()
        opt = torch.optim.SGD(train_net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        scales = list(list(i) for i in 1 / np.cumprod(np.vstack(strides), axis=0))[:-1]
        weights = np.array([1 / (2**i) for i in range(len(scales))])
        weights[-1] = 0
        loss_fn = DeepSupervisionWrapper(dc_ce, weights / weights.sum())
        targets = [seg_t if s == [1.0, 1.0, 1.0] else
                   F.interpolate(seg_t.float(), scale_factor=s, mode="nearest-exact").long() for s in scales]

        def step():
            opt.zero_grad(set_to_none=True)
            with precision():
                out = train_net(x2)
            loss = loss_fn([o.float() for o in out], targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(train_net.parameters(), 12)
            opt.step()

    # the float16 steps run without nnU-Net's gradient scaler (a few element-wise kernels more): timing, not training
    train_step = _median_time(step, repeats=5 if device.type == "cuda" else 3, warmup=2 if device.type == "cuda" else 1,
                              sync=sync)
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"params": params, "fwd_b1_s": fwd1, "fwd_b2_s": fwd2, "train_step_b2_s": train_step,
            "rss_baseline_mb": baseline, "rss_peak_mb": _rss_mb(), "gpu_peak_mb": gpu_peak}


def _run_worker(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    finally:
        os.unlink(f.name)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        sys.exit(f"worker {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])


# ---------------------------------------------------------------------------------------------- table
def _print_table(columns, title: str) -> None:
    print(title)
    head = f"{'':<30}" + "".join(f"{label:>22}" for label, _ in columns)
    print(head)
    print("-" * len(head))
    for label, key, fmt, scale in (("parameters (M)", "params", ".2f", 1e-6),
                                   ("forward, batch 1 (ms)", "fwd_b1_s", ".0f", 1e3),
                                   ("forward, batch 2 (ms)", "fwd_b2_s", ".0f", 1e3),
                                   ("training step, batch 2 (ms)", "train_step_b2_s", ".0f", 1e3),
                                   ("peak RSS (MB)", "rss_peak_mb", ".0f", 1.0),
                                   ("peak GPU memory (MB)", "gpu_peak_mb", ".0f", 1.0),
                                   ("RSS after imports (MB)", "rss_baseline_mb", ".0f", 1.0)):
        if all(r[key] != r[key] for _, r in columns):  # NaN everywhere: GPU memory on a CPU run
            continue
        print(f"{label:<30}" + "".join(f"{format(r[key] * scale, fmt):>22}" for _, r in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", dest="dataset", type=int, help="planned dataset id (our CPU plans must exist)")
    parser.add_argument("--patch", type=int, nargs=3, help="without a dataset: the patch both networks are built for")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--preset", default="cpu", help="without a dataset: our preset (cpu, base, large)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return
    if (args.dataset is None) == (args.patch is None):
        parser.error("give either -d DATASET or --patch X Y Z")

    if args.dataset is not None:
        specs = planned_specs(args.dataset)
        ours_kwargs = specs["ours"]["architecture"]["arch_kwargs"]
        unet_arch = specs["unet"]["architecture"]
        common = list(specs["unet"]["patch_size"])
        own = list(specs["ours"]["patch_size"])
        origin = (f"{specs['dataset']}: spacing {specs['ours']['spacing']} mm for both; nnU-Net's default planner "
                  f"chose patch {common} and batch {specs['unet']['batch_size']}; our CPU plans patch {own}, "
                  f"batch {specs['ours']['batch_size']}")
    else:
        from vertebraformer_nn.planners.presets import network_arch_kwargs

        common = own = list(args.patch)
        ours_kwargs = network_arch_kwargs(args.preset, common, [8, 8, 8], num_domains=4)
        unet_arch = _default_unet_architecture(common)
        origin = (f"patch {common}, our {args.preset} preset (no dataset: nnU-Net's U-Net topology from its default "
                  f"rules at 1 mm isotropic)")

    load_before = os.getloadavg()[0]
    base = {"threads": args.threads, "device": args.device}
    amp = "fp16" if args.device == "cuda" else "bf16"
    runs = {}
    for label, spec in (
        ("ours fp32", dict(base, kind="vertebraformer", arch_kwargs=ours_kwargs, patch=common, amp=False)),
        (f"ours {amp}", dict(base, kind="vertebraformer", arch_kwargs=ours_kwargs, patch=common, amp=True)),
        ("nnU-Net fp32", dict(base, kind="unet", architecture=unet_arch, patch=common, amp=False)),
        (f"nnU-Net {amp}", dict(base, kind="unet", architecture=unet_arch, patch=common, amp=True)),
    ):
        print(f"measuring {label} ...", flush=True)
        runs[label] = _run_worker(spec)
    if own != common:
        print("measuring ours at its own patch ...", flush=True)
        runs[f"ours {amp}, own patch"] = _run_worker(dict(base, kind="vertebraformer", arch_kwargs=ours_kwargs,
                                                          patch=own, amp=True))
    print()
    print(origin)
    where = _gpu_name() if args.device == "cuda" else f"{args.threads} CPU thread(s)"
    _print_table(list(runs.items()), f"{where}, same input size {common}; load average (1 min) "
                 f"before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    for precision in ("fp32", amp):
        ratio = runs[f"ours {precision}"]["fwd_b2_s"] / runs[f"nnU-Net {precision}"]["fwd_b2_s"]
        print(f"forward ratio ours / nnU-Net, batch 2, {precision}: {ratio:.3f} -> target <= 1/3: "
              f"{'met' if ratio <= 1 / 3 else 'NOT met'}")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def _default_unet_architecture(patch) -> dict:
    """nnU-Net's default 3d_fullres U-Net for ``patch`` at 1 mm isotropic (when no dataset is planned)."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, pool, kernels, _, _ = get_pool_and_conv_props([1.0, 1.0, 1.0], list(patch), 4, 999999)
    n = len(pool)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": [min(32 * 2**i, 320) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [list(k) for k in kernels],
            "strides": [list(s) for s in pool], "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


if __name__ == "__main__":
    main()
