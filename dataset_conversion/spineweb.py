"""SpineWeb (docs/source_layouts.md, "SpineWeb"): finds the cases; common.py converts them.

::

    ROOT/<case>/<case>.nii.gz | .nrrd | .mhd(+.zraw)     the CT            (--image-pattern, default '{case}.*')
    ROOT/<case>/<case>_label.nii.gz | .nrrd | .mhd       vertebra labels   (--label-pattern, default '{case}_label.*')
    ROOT/<case>/<case>_centroids.csv                     centroids         (--centroid-pattern, default '{case}_centroids.csv')

* One folder a case; ``{case}`` in a pattern is the folder name; matching is case-insensitive (so
  ``<case>_Label.nii`` matches) and only image files count for the image and label patterns (not ``.zraw``).
  No match, or several, skips the case with the reason.
* Case id and subject: the folder name. All cases are training data (SpineWeb sets have no official split here).
* Centroids: ``label,x,y,z`` rows in LPS mm (a header row is allowed; label as VerSe code or name) ->
  "annotated". A case with centroids but no label map is **centroid-only**: recorded in the report and in
  dataset.json's ``centroid_only_cases``, kept out of imagesTr.
* Labels: VerSe codes. Partially visible vertebrae (labelled by SpineWeb) are removed by common.py's policy.
  No lesions annotated.
"""
from __future__ import annotations

import csv
import fnmatch
import glob
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from vertebraformer_nn import labels

from .common import LoadedCase, SkipRecord, SourceCase

LAYOUT = "one folder per case: <case>/<case>.nii.gz (or .nrrd/.mhd) and <case>/<case>_label.nii.gz or <case>_centroids.csv"
LICENCE = "SpineWeb data-set terms (see the data set's page)"
IMAGE_PATTERN = "{case}.*"
LABEL_PATTERN = "{case}_label.*"
CENTROID_PATTERN = "{case}_centroids.csv"


def _matches(folder: Path, pattern: str, case: str, images_only: bool) -> List[Path]:
    from vertebraformer_nn import image_io

    pat = pattern.replace("{case}", glob.escape(case)).lower()
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not fnmatch.fnmatchcase(p.name.lower(), pat):
            continue
        if images_only and not image_io.is_image_file(p):
            continue
        out.append(p)
    return out


def read_centroid_csv(path: Path) -> Dict[int, np.ndarray]:
    """{VerSe code: LPS mm} from 'label,x,y,z' rows (optional header). ValueError naming the line when malformed."""
    out: Dict[int, np.ndarray] = {}
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    for n, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if n == 1 and len(cells) >= 4 and not _is_number(cells[1]):
            continue  # header
        if len(cells) < 4:
            raise ValueError(f"{path.name} line {n}: expected label,x,y,z")
        label = cells[0]
        try:
            code = int(label) if label.lstrip("-").isdigit() else labels.code(label)
            labels.name(code)
            point = np.array([float(c) for c in cells[1:4]])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path.name} line {n}: {e}") from None
        if code in out:
            raise ValueError(f"{path.name} line {n}: second centroid for {labels.name(code)}")
        if code in labels.VERTEBRA_CODES and np.all(np.isfinite(point)):
            out[code] = point
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _loader(image: Path, label: Path, ctd: Optional[Path]):
    def load() -> LoadedCase:
        from vertebraformer_nn import image_io

        points, notes = None, []
        if ctd is not None:
            try:
                points = read_centroid_csv(ctd)
            except (OSError, ValueError) as e:
                notes.append(f"centroid file not used ({e}); centroids estimated from the mask")
        return LoadedCase(image=image_io.read_image(image), vertebrae=image_io.read_label(label),
                          centroids_mm=points, notes=notes)
    return load


def discover(root: Path, image_pattern: str = IMAGE_PATTERN, label_pattern: str = LABEL_PATTERN,
             centroid_pattern: str = CENTROID_PATTERN, licence: str = LICENCE) -> Tuple[List[SourceCase], List[SkipRecord]]:
    root = Path(root)
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        case = folder.name
        rel = lambda p: str(p.relative_to(root))  # noqa: E731
        labels_found = _matches(folder, label_pattern, case, images_only=True)
        images = [p for p in _matches(folder, image_pattern, case, images_only=True) if p not in labels_found]
        ctds = _matches(folder, centroid_pattern, case, images_only=False)
        files = [rel(p) for p in images + labels_found + ctds]
        name = f"spineweb_{case}"
        where = f"in {rel(folder)}/"
        if not any(folder.iterdir()):
            skips.append(SkipRecord(name, f"empty folder {rel(folder)}/", []))
            continue
        if not images:
            skips.append(SkipRecord(name, f"CT missing: no image file matching {image_pattern!r} {where}", files))
            continue
        for what, found in (("CT images", images), ("label maps", labels_found), ("centroid files", ctds)):
            if len(found) > 1:
                skips.append(SkipRecord(name, f"ambiguous: several {what} {where}: {', '.join(p.name for p in found)}", files))
                break
        else:
            ctd = ctds[0] if ctds else None
            if labels_found:
                cases.append(SourceCase(case_id=case, subject=case, split="train", licence=licence, source_files=files,
                                        load=_loader(images[0], labels_found[0], ctd)))
            elif ctd is not None:
                try:
                    points = read_centroid_csv(ctd)
                except (OSError, ValueError) as e:
                    skips.append(SkipRecord(name, f"centroid-only case with an unreadable centroid file: {e}", files))
                    continue
                if not points:
                    skips.append(SkipRecord(name, "centroid-only case whose centroid file lists no vertebra", files))
                    continue
                cases.append(SourceCase(case_id=case, subject=case, split="train", licence=licence, source_files=files,
                                        centroid_only=True, centroids_mm=points,
                                        notes=["centroid-only annotation: recorded, kept out of training"]))
            else:
                skips.append(SkipRecord(name, f"no label map matching {label_pattern!r} and no centroid file matching "
                                              f"{centroid_pattern!r} {where}", files))
    return cases, skips

