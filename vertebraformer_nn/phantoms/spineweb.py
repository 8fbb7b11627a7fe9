"""SpineWeb writer (docs/source_layouts.md, "SpineWeb"): one folder a case, the CT and its label map as NIfTI,
NRRD or MetaImage (.mhd + .zraw), and for centroid-only cases a <case>_centroids.csv (label,x,y,z in LPS mm)
instead of a label map. Every visible vertebra is labelled, partial ones too; lesions are not annotated."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .. import labels
from ..image_io import write_image
from .case import Case


def write_case(root: Path, case: Case) -> Path:
    cid, fmt = case.plan.case_id, case.plan.extra["format"]
    folder = root / cid
    ct_path = write_image(case.ct_image(), folder / f"{cid}.{fmt}")
    if case.plan.extra.get("centroid_only"):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["label", "x", "y", "z"])
        cents = case.centroids(drop_partial=False)
        for code in labels.sort_anatomically(cents):
            w.writerow([code, *(f"{float(v):.2f}" for v in cents[code])])
        (folder / f"{cid}_centroids.csv").write_text(buf.getvalue())
    else:
        write_image(case.label_image(drop_partial=False), folder / f"{cid}_label.{fmt}")
    return ct_path
