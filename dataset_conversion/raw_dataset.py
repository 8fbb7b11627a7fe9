"""The MultiSpine raw dataset folder: where it is, which sources it holds, and their manifests.

``$nnUNet_raw/Dataset<ID>_<Name>/`` (name MultiSpine by default). Beside nnU-Net's folders, each converted
source leaves a manifest, ``conversion/<source>.json``: the source root, every converted case's record and
every skipped case with its reason. ``finalize`` builds dataset.json and the splits from these manifests,
so converting sources one call at a time (``--append``) and re-converting one source both work: a
re-conversion replaces that source's cases and manifest and touches nothing else.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from vertebraformer_nn.atomic import write_text_atomic

from .common import FILE_ENDING, SOURCES, SUBFOLDERS, ConversionError

DEFAULT_NAME = "MultiSpine"
MANIFEST_DIR = "conversion"


def write_json_atomic(path: Path, obj, indent: int = 2) -> Path:
    """Write JSON through a temporary file in the same folder, then rename: readers never see half a file."""
    return write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def _existing(raw: Path, dataset_id: int) -> List[Path]:
    return sorted(p for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir()) if raw.is_dir() else []


def find_dataset(dataset_id: int, name: Optional[str] = None, create: bool = False) -> Path:
    """The dataset folder of ``dataset_id`` (with ``create``: where a new one goes; the caller makes it when it
    writes). nnU-Net finds datasets by id, so two folders with one id are an error, and so is asking for another
    name than the existing folder has."""
    from vertebraformer_nn import paths

    if not 0 < int(dataset_id) < 1000:
        raise ConversionError(f"dataset id must be 1-999 (got {dataset_id})")
    raw = paths.raw_root()
    found = _existing(raw, dataset_id)
    if len(found) > 1:
        raise ConversionError(f"several folders for dataset {dataset_id} in {raw}: {', '.join(p.name for p in found)}; "
                              "nnU-Net finds datasets by id, so keep one")
    if found:
        if name and found[0].name != f"Dataset{dataset_id:03d}_{name}":
            raise ConversionError(f"dataset {dataset_id} already exists as {found[0]}; use --name "
                                  f"{found[0].name.split('_', 1)[1]} or another id")
        return found[0]
    folder = raw / f"Dataset{dataset_id:03d}_{name or DEFAULT_NAME}"
    if not create:
        raise ConversionError(f"no dataset {dataset_id} in {raw} (convert a source first: vertebraformer convert verse ROOT -d {dataset_id})")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or DEFAULT_NAME):
        raise ConversionError(f"dataset name {name!r}: use letters, digits, '-' and '_'")
    return folder


def manifest_path(folder: Path, source: str) -> Path:
    return folder / MANIFEST_DIR / f"{source}.json"


def load_manifests(folder: Path) -> Dict[str, dict]:
    """{source: manifest} for every source converted into ``folder`` (SOURCES order)."""
    out = {}
    for source in SOURCES:
        path = manifest_path(folder, source)
        if path.is_file():
            try:
                out[source] = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ConversionError(f"{path} is damaged ({e}); re-convert that source") from None
    return out


def case_of_file(filename: str) -> Optional[str]:
    """Case name of a raw-dataset file name (image files carry the _0000 channel suffix)."""
    if not filename.endswith(FILE_ENDING):
        return None
    stem = filename[: -len(FILE_ENDING)]
    return re.sub(r"_\d{4}$", "", stem)


def dataset_files(folder: Path) -> Dict[str, List[Path]]:
    """{case: [its files]} for every file in the six image/label/lesion folders."""
    out: Dict[str, List[Path]] = {}
    for sub in (*SUBFOLDERS["train"], *SUBFOLDERS["test"]):
        d = folder / sub
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            case = case_of_file(p.name)
            if case is not None and p.is_file():
                out.setdefault(case, []).append(p)
    return out


def source_of_case(case: str) -> Optional[str]:
    for s in SOURCES:
        if case.startswith(s + "_"):
            return s
    return None


def sources_present(folder: Path) -> List[str]:
    """Sources with a manifest or with files in the dataset (SOURCES order); 'other' for files of no source."""
    present = set(load_manifests(folder))
    for case in dataset_files(folder):
        present.add(source_of_case(case) or "other")
    return [s for s in (*SOURCES, "other") if s in present]


def remove_cases(folder: Path, cases: Iterable[str]) -> List[str]:
    """Delete every file of the given cases; returns the relative paths removed."""
    wanted = set(cases)
    return remove_files(folder, [p for case, files in dataset_files(folder).items() if case in wanted for p in files])


def remove_files(folder: Path, files: Iterable[Path]) -> List[str]:
    removed = []
    for p in files:
        p.unlink(missing_ok=True)
        removed.append(str(Path(p).relative_to(folder)))
    return sorted(removed)


def stale_files(folder: Path, source: str, expected: Iterable[str]) -> List[Path]:
    """Files of ``source``'s cases in the dataset that are not among ``expected`` (relative paths): cases no
    longer converted, a case now in the other split, a lesion map the case no longer has."""
    expected = set(expected)
    return [p for case, files in dataset_files(folder).items() if source_of_case(case) == source
            for p in files if str(p.relative_to(folder)) not in expected]
