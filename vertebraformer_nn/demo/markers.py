"""Step markers of ``vertebraformer demo``: one JSON file per finished step, so a re-run reuses what is done.

A marker (``OUT/.steps/<step>.json``) is written atomically after the step succeeded. It records the step's
parameters, its duration, what it found (``result``) and a digest of its outputs: for each output path (a file or
a folder, relative to OUT) the number of files and their total size. A step is reused when its marker exists, its
parameters are the same and every output still has that digest; otherwise it runs again, and so does every step
after it (their markers and outputs are removed first, so nothing of an older run is mixed in).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ..atomic import write_text_atomic


def normalise(params: dict) -> dict:
    """``params`` as it reads back from JSON (tuples become lists, keys strings), for comparison with a marker."""
    return json.loads(json.dumps(params, sort_keys=True))


def digest(root: Path, rel_paths: Iterable[str]) -> Dict[str, List[int]]:
    """{relative path: [number of files, total bytes]} of each output (a file counts as one); a missing path is
    [0, 0]. Hidden files (interrupted atomic writes) count too, so a half-written output never matches."""
    out = {}
    for rel in sorted(set(rel_paths)):
        path = root / rel
        if path.is_file():
            out[rel] = [1, path.stat().st_size]
        elif path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file()]
            out[rel] = [len(files), sum(p.stat().st_size for p in files)]
        else:
            out[rel] = [0, 0]
    return out


class Markers:
    """The marker files of one demo output folder."""

    def __init__(self, root: Path, folder: str = ".steps"):
        self.root = Path(root)
        self.folder = self.root / folder

    def path(self, step: str) -> Path:
        return self.folder / f"{step}.json"

    def load(self, step: str) -> Optional[dict]:
        try:
            return json.loads(self.path(step).read_text())
        except (OSError, ValueError):
            return None

    def why_not_reusable(self, step: str, params: dict) -> Optional[str]:
        """None when ``step`` may be reused with ``params``; otherwise the reason it must run."""
        marker = self.load(step)
        if marker is None:
            return "not run yet" if not self.path(step).exists() else "its marker is unreadable"
        if marker.get("params") != normalise(params):
            return "its parameters changed"
        expected = marker.get("outputs") or {}
        now = digest(self.root, expected)
        changed = [rel for rel in expected if now.get(rel) != expected[rel]]
        if changed:
            return f"its outputs are incomplete or changed ({', '.join(changed[:3])})"
        return None

    def write(self, step: str, params: dict, seconds: float, result: dict, outputs: Iterable[str]) -> dict:
        record = {"step": step, "params": normalise(params), "seconds": round(float(seconds), 2),
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "result": result,
                  "outputs": digest(self.root, outputs)}
        write_text_atomic(self.path(step), json.dumps(record, indent=1) + "\n")
        return record

    def remove(self, step: str) -> None:
        self.path(step).unlink(missing_ok=True)
