"""``summary.csv`` of a prediction run: one row per case, failures included with their reason.

The file is rewritten whole, atomically, after every case, so a crash or a kill never leaves a half-written
summary, and what is there is always a valid CSV of the cases done so far. ``-num_parts N -part_id I`` runs
write ``summary_part{I}of{N}.csv`` each, so shards on different machines never write the same file.

Per case also its quality flag (``quality``: ok / warning / fail) and the reasons (``quality_reasons``, ';'-separated
codes; ``quality.py``); a summary written before these columns existed is read with them empty.

``--continue``: ``SummaryWriter(..., resume=True)`` reloads the rows already in the file; a case that runs again
replaces its row (a failure retried becomes ``ok``), and a finished case that is skipped keeps its old row (or
gets one made from its ``<case>.json`` report with :func:`row_from_report`).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

from ..atomic import write_text_atomic
from .quality import summary_fields

#: Stages timed per case, in pipeline order.
STAGES = ("read", "preprocess", "network", "numbering", "export")
COLUMNS = ("case", "source", "status", "reason", "n_vertebrae", "first_level", "last_level", "n_lesions",
           *(f"seconds_{s}" for s in STAGES), "seconds_total", "quality", "quality_reasons")
#: columns a summary written before them may lack (read as empty)
LATER_COLUMNS = ("quality", "quality_reasons")


def summary_path(out_dir, part_id: Optional[int] = None, num_parts: Optional[int] = None) -> Path:
    """``summary.csv``, or ``summary_part{I}of{N}.csv`` for part I of N (N > 1)."""
    if num_parts is not None and num_parts > 1:
        if part_id is None or not 0 <= part_id < num_parts:
            raise ValueError(f"part_id must be in 0..{num_parts - 1} for {num_parts} parts, got {part_id}")
        return Path(out_dir) / f"summary_part{part_id}of{num_parts}.csv"
    return Path(out_dir) / "summary.csv"


def _seconds(seconds: Optional[Mapping[str, float]]) -> Dict[str, str]:
    seconds = dict(seconds or {})
    unknown = set(seconds) - set(STAGES) - {"total"}
    if unknown:
        raise ValueError(f"unknown timing stages {sorted(unknown)}; known: {', '.join(STAGES)}, total")
    total = seconds.get("total", sum(seconds.values()) if seconds else None)
    out = {f"seconds_{s}": "" if seconds.get(s) is None else f"{seconds[s]:.2f}" for s in STAGES}
    out["seconds_total"] = "" if total is None else f"{total:.2f}"
    return out


def row_from_report(report: Mapping, source=None, seconds: Optional[Mapping[str, float]] = None) -> Dict[str, str]:
    """The ``ok`` row of a case from its report (the dict ``write_case_outputs`` returns, or ``<case>.json``)."""
    vertebrae = report.get("vertebrae") or []
    return {
        "case": str(report["case"]), "source": str(source if source is not None else report.get("source") or ""),
        "status": "ok", "reason": "",
        "n_vertebrae": str(len(vertebrae)),
        "first_level": vertebrae[0]["name"] if vertebrae else "",
        "last_level": vertebrae[-1]["name"] if vertebrae else "",
        "n_lesions": str(len(report.get("lesions") or [])),
        **_seconds(seconds),
        **summary_fields(report.get("quality")),
    }


def failure_row(case: str, source, reason: str, seconds: Optional[Mapping[str, float]] = None) -> Dict[str, str]:
    """The ``failed`` row of a case, ``reason`` on one line."""
    return {"case": str(case), "source": str(source or ""), "status": "failed",
            "reason": " ".join(str(reason).split()),
            "n_vertebrae": "", "first_level": "", "last_level": "", "n_lesions": "", **_seconds(seconds),
            **summary_fields(None)}


def read_summary(path) -> List[Dict[str, str]]:
    """The rows of a summary file; a clear error naming the file when it is not one."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in LATER_COLUMNS]
            if missing:
                raise ValueError(f"{path}: not a VertebraFormer summary (columns {missing} missing)")
            return [{c: row.get(c) or "" for c in COLUMNS} for row in reader]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable summary file ({e})") from None


class SummaryWriter:
    """Keeps the rows of a run and rewrites the summary file after each :meth:`add`."""

    def __init__(self, out_dir, part_id: Optional[int] = None, num_parts: Optional[int] = None, resume: bool = False):
        self.path = summary_path(out_dir, part_id, num_parts)
        self.rows: Dict[str, Dict[str, str]] = {}
        if resume and self.path.exists():
            for row in read_summary(self.path):
                self.rows[row["case"]] = row

    def add(self, row: Mapping[str, str]) -> None:
        """Add or replace the row of ``row["case"]`` and rewrite the file."""
        bad = set(row) ^ set(COLUMNS)
        if bad:
            raise ValueError(f"summary row columns differ from {COLUMNS}: {sorted(bad)}")
        self.rows.pop(row["case"], None)  # a case run again moves to the end, in run order
        self.rows[row["case"]] = dict(row)
        self.write()

    def ok(self, report: Mapping, source=None, seconds: Optional[Mapping[str, float]] = None) -> None:
        self.add(row_from_report(report, source, seconds))

    def failed(self, case: str, source, reason: str, seconds: Optional[Mapping[str, float]] = None) -> None:
        self.add(failure_row(case, source, reason, seconds))

    def failures(self) -> List[Dict[str, str]]:
        return [r for r in self.rows.values() if r["status"] != "ok"]

    def write(self) -> Path:
        return write_text_atomic(self.path, format_rows(self.rows.values()))


def format_rows(rows: Iterable[Mapping[str, str]]) -> str:
    """CSV text of summary rows, header first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
