"""The folder runner that ``predict`` and ``ensemble`` share.

:func:`run_cases` is the loop: per case (sorted by name, one shard of them with ``num_parts``), skip it when
``resume`` and its outputs are complete, otherwise remove its stale report and stray temporary files, compute its
probabilities, save them (``save_probabilities``), export (with the run's post-processing values, which its report
records), and add its row (``ok`` with per-stage seconds, or ``failed`` with the reason) to the summary. A failing
case never stops the others and leaves no output of its own; the return value counts the failures.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from ..dicom_annotations.prediction_seg import seg_pending, write_case_seg
from . import probabilities as P
from .cases import CaseError
from .export import export_case
from .postprocessing import Resolved

__all__ = ["RunOptions", "case_complete", "run_cases"]


@dataclass
class RunOptions:
    preview: bool = True
    save_probabilities: bool = False
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    progress: bool = True
    numbering: str = "decoder"  # export.NUMBERING_MODES: "argmax" for ablations and baselines
    dicom_seg: bool = False  # also <case>_seg.dcm for cases read from a DICOM series (dicom_annotations.prediction_seg)
    postprocessing: Optional[Resolved] = None  # postprocessing.resolve(...); None: the documented defaults


def case_complete(out_dir: Path, case: str, save_probabilities: bool = False) -> Optional[dict]:
    """The report of a case whose outputs are all there (its ``<case>.json`` written last, every file it names,
    and the probabilities when asked for), else None."""
    from .case_outputs import case_files

    report_path = case_files(out_dir, case)["report"]
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    names = list((report.get("files") or {}).values())
    if save_probabilities:
        names.append(P.probabilities_file(out_dir, case).name)
    if not names or not all((Path(out_dir) / n).is_file() for n in names):
        return None
    return report


def _remove_leftovers(out_dir: Path, case: str, everything: bool = False) -> None:
    """Before a case runs: its old report (it marks the case finished; removed first), its old probabilities (a
    run without --save_probabilities must not leave another run's beside its outputs) and stray temporary files
    of an interrupted run (``.<file>.<random>...tmp*``). After it failed (``everything``): whatever it wrote, so no
    output stands beside its ``failed`` row."""
    import shutil

    from .case_outputs import case_files

    files = case_files(out_dir, case)
    files["report"].unlink(missing_ok=True)
    files["dicom_seg"].unlink(missing_ok=True)  # an older run's SEG never stands beside this run's outputs
    probabilities = P.probabilities_file(out_dir, case)
    probabilities.unlink(missing_ok=True)
    for path in [*files.values(), probabilities]:
        if everything:
            path.unlink(missing_ok=True)
        for stray in Path(out_dir).glob(f".{path.name}.*tmp*"):
            shutil.rmtree(stray) if stray.is_dir() else stray.unlink(missing_ok=True)


def _reason(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, (CaseError, ValueError)):
        return str(error)
    return f"internal error {type(error).__name__}: {error}"


def _seconds_text(seconds: Dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())


def run_cases(cases: Sequence, out_dir, compute: Callable, options: RunOptions,
              log: Callable[[str], None] = print) -> Tuple[int, int]:
    """Run ``compute(case, seconds, keep) -> (ct image, probabilities, meta)`` and the export for every case (module
    docstring); ``cases`` have ``name`` and ``source``; ``keep`` is the case's probabilities file when they are to be
    saved (compute collects them beside it, ``probabilities.save`` writes it), else None. Returns (number done,
    number failed)."""
    from tqdm import tqdm

    from .case_outputs import write_colour_table
    from .summary import SummaryWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_colour_table(out_dir)
    parts = options.num_parts if options.num_parts > 1 else None
    summary = SummaryWriter(out_dir, options.part_id if parts else None, parts, resume=options.resume)
    done = failed = 0
    bar = tqdm(cases, desc="cases", unit="case", disable=not options.progress, dynamic_ncols=True)
    say = bar.write if options.progress else log
    for case in bar:
        bar.set_postfix_str(case.name)
        if options.resume:
            report = case_complete(out_dir, case.name, options.save_probabilities)
            if report is not None and options.dicom_seg and getattr(case, "kind", None) == "dicom":
                report = None if seg_pending(report) else report
            if report is not None:
                if summary.rows.get(case.name, {}).get("status") != "ok":
                    summary.ok(report, case.source)
                say(f"{case.name}: outputs complete, skipped (--continue)")
                done += 1
                continue
        _remove_leftovers(out_dir, case.name)
        seconds: Dict[str, float] = {}
        start = time.perf_counter()
        try:
            keep = P.probabilities_file(out_dir, case.name) if options.save_probabilities else None
            image, probs, meta = compute(case, seconds, keep)
            t = time.perf_counter()
            if keep is not None:  # before the report, which marks the case finished
                P.save(keep, probs, meta)
            saving = time.perf_counter() - t
            report = export_case(out_dir, image, probs, meta, preview=options.preview, seconds=seconds,
                                 numbering=options.numbering, postprocessing=options.postprocessing)
            seconds["export"] += saving
            del image, probs
            if options.dicom_seg and getattr(case, "kind", None) == "dicom":  # after the report: it adds the file
                report = write_case_seg(out_dir, report, case.source)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one case's failure never stops the others
            seconds["total"] = time.perf_counter() - start
            _remove_leftovers(out_dir, case.name, everything=True)
            summary.failed(case.name, case.source, _reason(e), seconds)
            failed += 1
            say(f"{case.name}: FAILED: {_reason(e)}")
            if not isinstance(e, (CaseError, MemoryError)):
                say(traceback.format_exc())
            continue
        seconds["total"] = time.perf_counter() - start
        summary.ok(report, case.source, seconds)
        done += 1
        vertebrae = report.get("vertebrae") or []
        levels = f"{vertebrae[0]['name']}-{vertebrae[-1]['name']}" if vertebrae else "no vertebra"
        say(f"{case.name}: {len(vertebrae)} vertebrae ({levels}), {len(report.get('lesions') or [])} lesion(s); "
            f"{_seconds_text(seconds)}")
    bar.close()
    log(f"{done} case(s) done, {failed} failed; summary: {summary.path}")
    return done, failed

