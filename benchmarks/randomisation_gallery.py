"""Pictures of the trainer's domain randomisation (trainers/randomisation.py) on real training patches: what the
network sees. Not a test, not a benchmark of time: a look at how far beyond the phantoms' range each group goes.

    python benchmarks/randomisation_gallery.py -d 501 -o randomisation.png [-p VertebraFormerCPUPlans] [--seed 0]

For a few training patches of fold 0 (nnU-Net's loader, no augmentation), one row each: the patch, then the patch
after each group alone (forced on), then after every group at once, as mid-sagittal slices (head at the top) at
the plans' window; labels cut to the ignore label by the field-of-view group are outlined.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional


def patches(trainer, n: int) -> List[dict]:
    """``n`` unaugmented training patches (image, segmentation) in the loader's per-sample layout."""
    import torch
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    dataset_tr, _ = trainer.get_tr_and_val_datasets()
    patch = trainer.configuration_manager.patch_size
    loader = nnUNetDataLoader(dataset_tr, n, patch, patch, trainer.label_manager, oversample_foreground_percent=1.0)
    batch = loader.generate_train_batch()
    return [{"image": torch.as_tensor(batch["data"][i]).float(), "segmentation": torch.as_tensor(batch["target"][i])}
            for i in range(n)]


def sagittal(volume, si_axis: int, lr_axis: int):
    """The middle left-right slice, head-foot running down the rows (RAS arrays: head at the highest index)."""
    import numpy as np

    slab = np.take(volume, volume.shape[lr_axis] // 2, axis=lr_axis)
    axes = [a for a in range(3) if a != lr_axis]
    slab = slab if axes.index(si_axis) == 0 else slab.T
    return slab[::-1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("-p", "--plans", help="plans identifier (default: as vertebraformer train picks)")
    parser.add_argument("-o", "--output", type=Path, default=Path("randomisation.png"))
    parser.add_argument("--patches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("nnUNet_compile", "f")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from vertebraformer_nn.labels import IGNORE_LABEL
    from vertebraformer_nn.plans_facts import anatomical_axes
    from vertebraformer_nn.trainers.build import build_trainer
    from vertebraformer_nn.trainers.randomisation import GROUPS, GroupTransform, randomisation_transforms
    from vertebraformer_nn.trainers.randomisation_intensity import NormalisedCT

    trainer = build_trainer(args.dataset, 0, "3d_fullres", "VertebraFormerTrainer", args.plans, "cpu")
    plans = trainer.plans_manager.plans
    axes, window = anatomical_axes(plans), NormalisedCT.from_plans(plans)
    spacing = [float(s) for s in trainer.configuration_manager.spacing]
    transforms = randomisation_transforms(GROUPS, window, spacing, axes["si"], IGNORE_LABEL,
                                          {g: 1.0 for g in GROUPS})
    np.random.seed(args.seed)
    samples = patches(trainer, args.patches)
    columns = ["patch", *GROUPS, "all groups"]
    fig, grid = plt.subplots(len(samples), len(columns), figsize=(1.6 * len(columns), 2.6 * len(samples)),
                             squeeze=False)
    lo, hi = (float(window.from_hu(torch.tensor(h))) for h in (window.lower_hu, window.upper_hu))
    for row, sample in enumerate(samples):
        for col, name in enumerate(columns):
            data = {k: v.clone() for k, v in sample.items()}
            chosen = [] if name == "patch" else transforms if name == "all groups" else \
                [t for t in transforms if isinstance(t, GroupTransform) and t.group == name]
            for t in chosen:
                data = t(**data)
            ax = grid[row][col]
            ax.imshow(sagittal(data["image"][0].numpy(), axes["si"], axes["lr"]), cmap="gray", vmin=lo, vmax=hi)
            ignore = sagittal((data["segmentation"][0] == IGNORE_LABEL).numpy(), axes["si"], axes["lr"])
            if ignore.any():
                ax.contour(ignore, levels=[0.5], colors="orange", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(f"domain randomisation on training patches of {trainer.plans_manager.dataset_name} "
                 f"({'x'.join(map(str, trainer.configuration_manager.patch_size))} at {spacing} mm; window "
                 f"[{window.lower_hu:.0f}, {window.upper_hu:.0f}] HU)", fontsize=8)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
