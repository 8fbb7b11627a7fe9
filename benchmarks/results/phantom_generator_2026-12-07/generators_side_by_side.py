"""The same phantom subjects drawn by both generators beside the real lumbar CT verse014, at one window: a mid-sagittal
slice through the spine (1 mm, head up, anterior left). Usage: generators_side_by_side.py OUT.png OLD_SIM TODAY_SIM"""
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from vertebraformer_nn.image_io import read_image, read_label

WINDOW = (-250.0, 1250.0)  # HU: soft tissue to cortex
SUBJECTS = ["sub-verse501", "sub-verse503", "sub-verse505"]  # the same subjects' first scan in both sets
REAL = Path(os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real")) / "verse_sub-verse014"
H = 360


def sagittal(ct_file: Path, mask_file: Path) -> np.ndarray:
    """The 8-bit mid-sagittal slice (through the mask's centre) of a CT resampled to 1 mm in LPS, head up."""
    ct, mask = (sitk.DICOMOrient(img, "LPS") for img in (read_image(ct_file), read_label(mask_file)))
    size = [int(round(n * s)) for n, s in zip(ct.GetSize(), ct.GetSpacing())]
    grid = dict(size=size, outputOrigin=ct.GetOrigin(), outputSpacing=(1.0, 1.0, 1.0),
                outputDirection=ct.GetDirection())
    ct = sitk.Resample(ct, interpolator=sitk.sitkLinear, defaultPixelValue=-1024, **grid)
    mask = sitk.Resample(mask, interpolator=sitk.sitkNearestNeighbor, **grid)
    a, m = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(mask) > 0  # (S->I as z rises in LPS? z is superior)
    x = int(round(np.argwhere(m)[:, 2].mean()))
    sl = a[::-1, :, x]  # LPS: z grows to the head; flip so the head is up; columns run anterior (y small) to posterior
    lo, hi = WINDOW
    return (np.clip((sl - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def first_scan(sim: Path, subject: str):
    ct = sorted((sim / "verse").glob(f"*/rawdata/{subject}/*_ct.nii.gz"))[0]
    return ct, Path(str(ct).replace("rawdata", "derivatives").replace("_ct.nii.gz", "_seg-vert_msk.nii.gz"))


def tile(pixels: np.ndarray, title: str) -> Image.Image:
    im = Image.fromarray(pixels)
    im = im.resize((max(1, round(im.width * H / im.height)), H), Image.LANCZOS).convert("RGB")
    ImageDraw.Draw(im).text((6, 6), title, fill="yellow", font=ImageFont.load_default(size=18))
    return im


def main(out: str, old_sim: str, today_sim: str) -> None:
    rows = []
    for subject in SUBJECTS:
        row = [tile(sagittal(*first_scan(Path(old_sim), subject)), f"{subject} 2026-12-02"),
               tile(sagittal(*first_scan(Path(today_sim), subject)), f"{subject} today")]
        rows.append(row)
    real = tile(sagittal(REAL / "sub-verse014_ct.nii.gz", REAL / "sub-verse014_seg-vert_msk.nii.gz"), "verse014 (real)")
    width = max(sum(t.width for t in r) for r in rows) + real.width
    canvas = Image.new("RGB", (width, H * len(rows)), "black")
    for i, row in enumerate(rows):
        x = 0
        for t in row:
            canvas.paste(t, (x, i * H))
            x += t.width
    canvas.paste(real, (width - real.width, 0))
    canvas.quantize(256).save(out, optimize=True)
    print(out, canvas.size)


if __name__ == "__main__":
    main(*sys.argv[1:4])
