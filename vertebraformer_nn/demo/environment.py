"""Where and on what ``vertebraformer demo`` runs: the device, the output folder it may use, its input links, and
nnU-Net's environment variables for the run (pointing into OUT, restored afterwards)."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import List

#: written into OUT on the first run: only such a folder (or an empty one) is used, since steps delete their
#: own outputs there before running again
OWNER_FILE = ".vertebraformer-demo"


class DemoError(RuntimeError):
    """A step failed in a way the user must see (the message says which step and why)."""


def resolve_device(device: str) -> str:
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise DemoError("-device cuda: no CUDA GPU is available to torch here")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()} CPU core(s)"


def gpu_memory_gb() -> float:
    """The planner's GPU memory target: the card's memory, at most the planner's default of 24 GB."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory / 1024 ** 3
    return float(min(24.0, round(0.85 * total)))


def processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def claim_output_folder(out: Path) -> None:
    """Use ``out`` only if it is new, empty or an earlier demo's (steps delete their own outputs in it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out} is a file; choose a folder for the demo")
    if out.is_dir() and any(out.iterdir()) and not (out / OWNER_FILE).is_file():
        raise DemoError(f"{out} is not empty and is not an earlier demo's folder; choose a new or empty folder "
                        "(nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    (out / OWNER_FILE).write_text("vertebraformer demo output; re-running the demo reuses and replaces what is here\n")


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes a relative link to ``source`` (a copy where the file system has no links), replacing
    whatever was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.symlink(os.path.relpath(source, target.parent), target)
    except OSError:
        shutil.copyfile(source, target)


def link_inputs(images: Path, cases: List[str], target: Path) -> None:
    """``target`` holds ``<case>_0000.nii.gz`` of each case as a link to the raw dataset's image (a copy where the
    file system has no links)."""
    if target.is_dir():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for case in cases:
        source = images / f"{case}_0000.nii.gz"
        if not source.is_file():
            raise DemoError(f"{source}: image of validation case {case} is missing from the raw dataset")
        link_or_copy(source, target / source.name)


@contextmanager
def demo_environment(paths, device: str):
    """nnU-Net's folders inside OUT (and small-machine defaults) for the run; the old values come back after."""
    values = {"nnUNet_raw": str(paths.raw), "nnUNet_preprocessed": str(paths.preprocessed),
              "nnUNet_results": str(paths.results), "nnUNet_compile": os.environ.get("nnUNet_compile", "f"),
              "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", str(processes()))}
    if device == "cpu" and (os.cpu_count() or 1) <= 4:
        # augmentation workers only compete with the network for a few cores
        values["nnUNet_n_proc_DA"] = os.environ.get("nnUNet_n_proc_DA", "1")
    old = {k: os.environ.get(k) for k in values}
    for folder in (paths.raw, paths.preprocessed, paths.results):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
