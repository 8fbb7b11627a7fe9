"""One picture of the ablation: a row per arm (its previews of verse014, example_ct and the chest), titled."""
import os
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

A = Path(os.environ.get("W", "/tmp/s30")) / "abl"  # run.sh's work folder
ARMS = sys.argv[2:] or ["all", "all2", "none", "noIntensity", "noAcquisition", "noContent"]  # the rows
CASES = ["verse014", "example_ct", "chest"]
H = 300
rows = []
for arm in ARMS:
    tiles = []
    for case in CASES:
        f = A / f"pred_{arm}" / "rc" / "predictions" / f"{case}_preview.png"
        im = Image.open(f).convert("RGB")
        tiles.append(im.resize((round(im.width * H / im.height), H), Image.LANCZOS))
    width = sum(t.width for t in tiles) + 140
    row = Image.new("RGB", (width, H), "white")
    ImageDraw.Draw(row).text((8, H // 2 - 20), arm, fill="black", font=ImageFont.load_default(size=26))
    x = 140
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width
    rows.append(row)
out = Image.new("RGB", (max(r.width for r in rows), H * len(rows)), "white")
for i, r in enumerate(rows):
    out.paste(r, (0, i * H))
out.quantize(256).save(sys.argv[1], optimize=True)  # a palette keeps the record small
print(sys.argv[1], out.size)
