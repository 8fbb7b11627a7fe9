"""Pictures of MultiSpine-Sim phantoms beside real CT, at the same windows and planes.

    python tools/phantom_vs_real.py [--real ../shared/data/real] [--out docs/images] [--seed 0]

For each real scan kept for checking (MANIFEST.md: the abdomen-pelvis ``totalsegmentator/example_ct``, the lumbar
``verse_sub-verse014`` and the chest DICOM series ``itkelastix_chest_dicom``; looked at, never used for shapes or
training) it generates a phantom of the same region at about the same voxel size and field of view (no domain
randomisation: a scanner style's plain draw), and writes ``phantom_vs_real_<name>.png``: rows real / phantom,
columns sagittal and coronal planes through the spine, each in a bone window (W1500/L300) and a soft-tissue
window (W400/L40). Planes are found the same way in both (the left-right column and the front-back row holding
the most bone), and images are shown in millimetres, so sizes compare directly.
"""
from __future__ import annotations

import argparse
import io
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vertebraformer_nn.image_io import read_image  # noqa: E402
from vertebraformer_nn.phantoms.anatomy import sample_subject  # noqa: E402
from vertebraformer_nn.phantoms.fov import plan_grid  # noqa: E402
from vertebraformer_nn.phantoms.plan import rng_for  # noqa: E402
from vertebraformer_nn.phantoms.render import render  # noqa: E402
from vertebraformer_nn.phantoms.scanner import acquire  # noqa: E402
from vertebraformer_nn.phantoms.styles import SOURCE_STYLES, sample_scan_params  # noqa: E402

WINDOWS = {"bone W1500/L300": (300.0, 1500.0), "soft tissue W400/L40": (40.0, 400.0)}
#: Real scan (relative to the real-data folder) -> the phantom that resembles it: field of view, style, pixel and
#: slice spacing (mm), axial field of view (left-right, front-back mm; verse014 is a tight crop around the spine).
PAIRS = {
    "example_ct": ("totalsegmentator/example_ct.nii.gz", "abdomen", "ctspine1k", 3.0, 3.0, (330.0, 300.0)),
    "verse014": ("verse_sub-verse014/sub-verse014_ct.nii.gz", "lumbar", "verse", 1.0, 2.0, (90.0, 190.0)),
    "chest_dicom": ("itkelastix_chest_dicom", "thoracic", "dicom", 1.2, 2.0, (430.0, 330.0)),
}


def phantom(fov: str, style_name: str, pixel_mm: float, slice_mm: float, axial_mm, seed: int) -> sitk.Image:
    style = replace(SOURCE_STYLES[style_name], max_voxels=20_000_000)
    subject = sample_subject(rng_for(seed, "pictures", "anatomy", fov), f"pictures_{fov}", transitional=None,
                             degeneration=rng_for(seed, "pictures", "degeneration", fov))
    rng = rng_for(seed, "pictures", "scan", fov)
    p = replace(sample_scan_params(style, rng, fov=fov, axcodes="LPS"), pixel_mm=pixel_mm, slice_mm=slice_mm,
                thickness_mm=slice_mm, axial_mm=tuple(axial_mm), metal=False)
    grid, placement, _ = plan_grid(subject, p, style, rng_for(seed, "pictures", "fov", fov))
    rendered = render(subject, grid, placement, p.contrast)
    return grid.image(acquire(rendered.hu, grid, p, rng_for(seed, "pictures", "noise", fov), rendered.metal))


def _longest_run(profile: np.ndarray) -> float:
    """Centre of the longest run of True in a 1-D profile (NaN if none)."""
    best, start, centre = 0, None, np.nan
    for k, v in enumerate(np.append(profile, False)):
        if v and start is None:
            start = k
        elif not v and start is not None:
            if k - start > best:
                best, centre = k - start, 0.5 * (start + k - 1)
            start = None
    return centre


def planes(image: sitk.Image):
    """(sagittal (S, P), coronal (S, L), spacing (L, P, S)) through the spine, found the same way in any scan: the
    left-right position is the median over axial slices of the column holding the most bone in the middle half;
    the front-back position the median of the centre of the longest bone run there (the vertebral body)."""
    lps = sitk.DICOMOrient(image, "LPS")
    a = sitk.GetArrayFromImage(lps).astype(np.float32)  # (S, P, L)
    sp = lps.GetSpacing()
    bone = a > 200.0
    n_l = a.shape[2]
    lo, hi = n_l // 4, 3 * n_l // 4
    per_slice = bone[:, :, lo:hi].sum(axis=1)
    has = per_slice.max(axis=1) > 0
    x = lo + int(np.median(np.argmax(per_slice[has], axis=1))) if has.any() else n_l // 2
    half = max(int(round(6.0 / sp[0])), 1)
    # Vertebral bodies are trabecular bone (150-300 HU): look for them in a smoothed image at a lower threshold.
    smooth = ndimage.gaussian_filter(a[:, :, max(x - half, 0): x + half + 1], [1.5 / sp[2], 1.5 / sp[1], 1.5 / sp[0]])
    slab = smooth.mean(axis=2) > 120.0  # (S, P)
    centres = np.array([_longest_run(row) for row in slab])
    y = int(np.nanmedian(centres)) if np.isfinite(centres).any() else a.shape[1] // 2
    return a[:, :, x], a[:, y, :], sp


def figure(real: sitk.Image, sim: sitk.Image, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("real", *planes(real)), ("phantom", *planes(sim))]
    widths = [[sag.shape[1] * sp[1]] * 2 + [cor.shape[1] * sp[0]] * 2 for _, sag, cor, sp in rows]
    heights = [sag.shape[0] * sp[2] for _, sag, _, sp in rows]
    aspect = sum(h / sum(w) for h, w in zip(heights, widths))
    width = min(16.0, 11.0 / aspect)  # tall pairs (the lumbar crop) narrower, to keep the picture small
    fig = plt.figure(figsize=(width, width * aspect + 1.0))
    outer = fig.add_gridspec(2, 1, height_ratios=[h / sum(w) for h, w in zip(heights, widths)])
    axes = [[fig.add_subplot(cell) for cell in outer[r].subgridspec(1, 4, width_ratios=widths[r])] for r in range(2)]
    for r, (name, sag, cor, sp) in enumerate(rows):
        h = sag.shape[0] * sp[2]
        cols = []
        for window, (level, width) in WINDOWS.items():
            cols.append((sag, (0, sag.shape[1] * sp[1], 0, h), f"{name}: sagittal, {window}", level, width))
        for window, (level, width) in WINDOWS.items():
            cols.append((cor, (cor.shape[1] * sp[0], 0, 0, h), f"{name}: coronal, {window}", level, width))
        for c, (img, ext, label, level, width) in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, origin="lower", extent=ext,
                      interpolation="bilinear")
            ax.set_title(label, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=72)
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("L").save(path, optimize=True)  # grey anyway: an 8-bit PNG is a third the size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=sorted(PAIRS), help="only these real scans")
    args = ap.parse_args(argv)
    for name, (rel, fov, style, pixel, slc, axial) in PAIRS.items():
        if args.only and name not in args.only:
            continue
        real = read_image(args.real / rel)
        sim = phantom(fov, style, pixel, slc, axial, args.seed)
        title = (f"{name} ({'x'.join(f'{s:.2g}' for s in real.GetSpacing())} mm) vs a MultiSpine-Sim phantom "
                 f"({fov}, {style} style, {pixel:g} x {pixel:g} x {slc:g} mm)")
        out = args.out / f"phantom_vs_real_{name}.png"
        figure(real, sim, title, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
