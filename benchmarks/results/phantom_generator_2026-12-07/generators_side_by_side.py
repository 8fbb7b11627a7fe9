"""The same phantom subjects drawn by both generators beside the real lumbar CT verse014, at one window: the sagittal
plane through the spine (in millimetres, head up, anterior left).

Usage: generators_side_by_side.py OUT.png OLD_SIM TODAY_SIM"""
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from phantom_vs_real import planes  # noqa: E402  the spine's sagittal plane, found the same way in any scan

from vertebraformer_nn.image_io import read_image  # noqa: E402

WINDOW = (-250.0, 1250.0)  # HU: soft tissue to cortex
SUBJECTS = ["sub-verse501", "sub-verse503", "sub-verse505"]  # the same subjects' first scan in both sets
REAL = Path(os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real")) / "verse_sub-verse014"
H = 360


def tile(ct_file: Path, title: str) -> Image.Image:
    """The CT's sagittal plane through the spine (``phantom_vs_real.planes``), windowed, head up, anterior left,
    scaled to millimetres and H pixels high, titled."""
    sagittal, _, spacing = planes(read_image(ct_file))  # (S, P), S growing to the head; spacing (L, P, S)
    lo, hi = WINDOW
    pixels = (np.clip((sagittal[::-1] - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    width = max(1, round(pixels.shape[1] * spacing[1] * H / (pixels.shape[0] * spacing[2])))
    im = Image.fromarray(pixels).resize((width, H), Image.LANCZOS).convert("RGB")
    ImageDraw.Draw(im).text((6, 6), title, fill="yellow", font=ImageFont.load_default(size=18))
    return im


def first_scan(sim: Path, subject: str) -> Path:
    return sorted((sim / "verse").glob(f"*/rawdata/{subject}/*_ct.nii.gz"))[0]


def main(out: str, old_sim: str, today_sim: str) -> None:
    rows = [[tile(first_scan(Path(old_sim), subject), f"{subject} 2026-12-02"),
             tile(first_scan(Path(today_sim), subject), f"{subject} today")] for subject in SUBJECTS]
    real = tile(REAL / "sub-verse014_ct.nii.gz", "verse014 (real)")
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
