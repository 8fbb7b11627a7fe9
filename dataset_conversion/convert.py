"""``convert_source``: one source into the MultiSpine raw dataset, with its report.

Rules: the source folder is only read; without ``append`` a dataset that already holds another source is
refused; re-converting a source replaces exactly that source's cases (its stale files are removed at the
end, after the new ones are written) and its manifest; a case that cannot be converted is listed with its
reason and the others still run; the report's ``ok`` is False when any case was skipped.
``finalize`` (multispine.py) must run afterwards: dataset.json and the splits are built there.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .common import SOURCES, CaseRecord, ConversionError, SkipRecord, convert_all
from .raw_dataset import find_dataset, manifest_path, remove_files, sources_present, stale_files, write_json_atomic

#: Source name -> module (each has ``discover(root, **options)`` and ``LAYOUT``, a one-line expected layout).
MODULES = {"verse": "verse", "ctspine1k": "ctspine1k", "spineweb": "spineweb", "dicom": "dicom_cohort"}


def source_module(source: str):
    if source not in MODULES:
        raise ConversionError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    return importlib.import_module(f"{__package__}.{MODULES[source]}")


@dataclass
class SourceReport:
    source: str
    root: str
    dataset: str
    converted: List[CaseRecord] = field(default_factory=list)
    skipped: List[SkipRecord] = field(default_factory=list)
    removed_stale: List[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.skipped

    @property
    def centroid_only(self) -> List[CaseRecord]:
        return [r for r in self.converted if r.centroid_only]

    def to_json(self) -> dict:
        return {
            "source": self.source, "root": self.root, "dataset": self.dataset, "options": self.options,
            "converted": [r.to_json() for r in self.converted],
            "skipped": [s.to_json() for s in self.skipped],
            "removed_stale": list(self.removed_stale),
        }

    def format(self) -> str:
        """The per-source report for the terminal: every case, converted or skipped with its reason."""
        lines = [f"convert {self.source}: {self.root} -> {self.dataset}"]
        for r in self.converted:
            what = "centroids only, kept out of training" if r.centroid_only else ("test split" if r.split == "test" else "train")
            extra = [n for n in r.notes]
            lines.append(f"  converted  {r.case} ({what})" + "".join(f"\n             - {n}" for n in extra))
        for s in self.skipped:
            lines.append(f"  SKIPPED    {s.case}: {s.reason}")
        if self.removed_stale:
            lines.append(f"  removed {len(self.removed_stale)} file(s) of earlier {self.source} cases no longer converted")
        n_img = sum(1 for r in self.converted if not r.centroid_only)
        lines.append(f"{self.source}: {n_img} case(s) converted, {len(self.centroid_only)} centroid-only, "
                     f"{len(self.skipped)} skipped. Next: vertebraformer convert finalize -d {_dataset_id(self.dataset)}")
        return "\n".join(lines)


def _dataset_id(folder: str) -> str:
    name = Path(folder).name
    return str(int(name[7:10])) if name.startswith("Dataset") else "?"


def convert_source(source: str, root, dataset_id: int, append: bool = False, name: Optional[str] = None,
                   progress: bool = False, **options) -> SourceReport:
    """Convert source ``source`` ('verse', 'ctspine1k', 'spineweb', 'dicom') found at ``root`` into dataset
    ``dataset_id``. Options are passed to the source's ``discover`` (spineweb: ``image_pattern``,
    ``label_pattern``, ``centroid_pattern``; dicom: ``mapping``). Raises ConversionError when nothing can run."""
    module = source_module(source)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConversionError(f"{source} source folder {root} does not exist or is not a folder")
    folder = find_dataset(dataset_id, name, create=True)
    others = [s for s in sources_present(folder) if s != source]
    if others and not append:
        raise ConversionError(
            f"{folder} already holds {', '.join(others)} case(s); pass --append to add {source} to it "
            f"(re-converting {source} replaces only {source}'s cases)")

    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(module.discover).parameters) - {"root"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConversionError(f"{source} takes no option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted)) or 'none'}")
    cases, skips = module.discover(root, **options)
    if not cases and not skips:
        raise ConversionError(f"no {source} cases found under {root}; expected {module.LAYOUT}")
    folder.mkdir(parents=True, exist_ok=True)  # only now: a conversion that cannot start leaves nothing behind
    say = (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)) if progress else None
    records, failed = convert_all(source, cases, folder, progress=say)
    skips = list(skips) + failed

    report = SourceReport(source=source, root=str(root.resolve()), dataset=str(folder), converted=sorted(records, key=lambda r: r.case),
                          skipped=sorted(skips, key=lambda s: s.case), options={k: str(v) for k, v in options.items()})
    # Only now, with the new files in place, do earlier cases of this source that are gone get removed.
    expected = {f for r in records for f in r.files}
    report.removed_stale = remove_files(folder, stale_files(folder, source, expected))
    write_json_atomic(manifest_path(folder, source), report.to_json())
    return report
