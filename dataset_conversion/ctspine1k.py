"""CTSpine1K (docs/source_layouts.md, "CTSpine1K"): finds the cases; common.py converts them.

::

    ROOT/volumes/<collection>/<stem>.nii.gz
    ROOT/labels/<collection>/<stem>_seg.nii.gz
    ROOT/data_split.txt            (also accepted: the HF mirror's rawdata/volumes, rawdata/labels, metadata/data_split.txt)

* Volumes and labels are found recursively below any ``volumes`` / ``labels`` folder and paired by stem.
  A stem found twice (two collections) is ambiguous: both copies are skipped.
* ``data_split.txt``: blocks ``trainset:``, ``test_public:``, ``test_private:`` of ``<stem>.nii.gz`` lines.
  test_public and test_private go to imagesTs. A volume the file does not list is converted as training
  data, with a note; without the file, every case is training data (noted).
* Subject: the stem; common.dataset_subject turns VerSe subjects re-annotated by CTSpine1K (``verse506_CT-iso``,
  ``verse100``) into the global ``verse506`` / ``verse100`` (so de-duplication against VerSe finds them).
* Labels: VerSe codes 1-25 (``labels.CTSPINE1K_CODES``; no T13). CTSpine1K labels partially visible
  vertebrae; the partial-vertebra policy (partial_vertebrae.py) makes them the ignore label (listed per case). No
  lesions, no fractures.
* Licence: CC BY-NC-SA 4.0 (the sub-collections keep their own terms; the collection is named).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from vertebraformer_nn import labels

from .common import ConversionError, LoadedCase, SkipRecord, SourceCase

LAYOUT = "volumes/<collection>/<stem>.nii.gz with labels/<collection>/<stem>_seg.nii.gz and data_split.txt"
LICENCE = "CC BY-NC-SA 4.0"
SPLIT_FILE = "data_split.txt"
_SPLIT_OF_BLOCK = {"trainset": "train", "test_public": "test", "test_private": "test"}
def _stem(name: str, suffix: str = "") -> Optional[str]:
    for ext in (".nii.gz", ".nii"):
        if name.endswith(suffix + ext):
            return name[: -len(suffix + ext)]
    return None


def read_data_split(path: Path) -> Dict[str, Tuple[str, str]]:
    """{stem: (split, block name)} from data_split.txt."""
    out: Dict[str, Tuple[str, str]] = {}
    block = None
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if text.endswith(":"):
            block = text[:-1].strip().lower()
            if block not in _SPLIT_OF_BLOCK:
                raise ConversionError(f"{path} line {n}: unknown block {text!r} (expected trainset:, test_public:, test_private:)")
            continue
        if block is None:
            raise ConversionError(f"{path} line {n}: {text!r} before any trainset:/test_public:/test_private: header")
        stem = _stem(text) or text
        out[stem] = (_SPLIT_OF_BLOCK[block], block)
    return out


def _files_below(root: Path, folder_name: str, suffix: str) -> Dict[str, List[Path]]:
    found: Dict[str, List[Path]] = {}
    for top in sorted(p for p in root.rglob(folder_name) if p.is_dir()):
        for f in sorted(top.rglob("*.nii*")):
            if f.name.startswith(".") or not f.is_file():
                continue
            stem = _stem(f.name, suffix)
            if stem is None or (not suffix and f.name.endswith(("_seg.nii.gz", "_seg.nii"))):
                continue
            found.setdefault(stem, []).append(f)
    return found


def _loader(volume: Path, label: Path):
    def load() -> LoadedCase:
        from vertebraformer_nn import image_io

        return LoadedCase(image=image_io.read_image(volume), vertebrae=image_io.read_label(label))
    return load


def discover(root: Path) -> Tuple[List[SourceCase], List[SkipRecord]]:
    root = Path(root)
    split_path = next((p for p in (root / SPLIT_FILE, root / "metadata" / SPLIT_FILE) if p.is_file()), None)
    if split_path is None:
        found = sorted(root.rglob(SPLIT_FILE))
        split_path = found[0] if found else None
    split = read_data_split(split_path) if split_path else {}
    volumes = _files_below(root, "volumes", "")
    segs = _files_below(root, "labels", "_seg")
    rel = lambda p: str(p.relative_to(root))  # noqa: E731
    cases: List[SourceCase] = []
    skips: List[SkipRecord] = []
    for stem in sorted(set(volumes) | set(segs) | set(split)):
        vols, labs = volumes.get(stem, []), segs.get(stem, [])
        files = [rel(p) for p in vols + labs]
        if len(vols) > 1 or len(labs) > 1:
            skips.append(SkipRecord(f"ctspine1k_{stem}", f"stem {stem!r} found more than once: {', '.join(files)}", files))
            continue
        if not vols:
            why = "listed in data_split.txt but " if stem in split and not labs else ""
            skips.append(SkipRecord(f"ctspine1k_{stem}", f"CT missing: {why}no volumes/**/{stem}.nii.gz", files))
            continue
        if not labs:
            skips.append(SkipRecord(f"ctspine1k_{stem}", f"no label file labels/**/{stem}_seg.nii.gz", files))
            continue
        notes = []
        if split_path is None:
            notes.append("no data_split.txt: treated as training data")
        elif stem not in split:
            notes.append(f"not listed in {rel(split_path)}: treated as training data")
        case_split, block = split.get(stem, ("train", None))
        if case_split == "test":
            notes.append(f"CTSpine1K split: {block}")
        collection = vols[0].parent.name
        cases.append(SourceCase(
            case_id=stem, subject=stem, split=case_split,
            licence=f"{LICENCE} (collection {collection}: its own terms also apply)",
            source_files=files + ([rel(split_path)] if split_path and stem in split else []),
            load=_loader(vols[0], labs[0]), allowed_codes=labels.CTSPINE1K_CODES, notes=notes))
    return cases, skips
