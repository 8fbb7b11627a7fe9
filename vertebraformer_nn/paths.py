"""nnU-Net's data folders. nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results``;
when a user has not set them, we set them to a per-user default (announced once) so a first run just works.
nnU-Net 2.8 reads the variables lazily, so setting them in-process before use is enough."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: Base of the defaults; override with VERTEBRAFORMER_HOME.
DEFAULT_HOME = Path.home() / ".vertebraformer" / "nnunet_data"

_announced = False


def real_data_dir() -> Path:
    """The development checkout's shared real CT and annotation files (``../shared/data/real`` beside the repository,
    never copied into it), read by the tests and the benchmarks; ``VERTEBRAFORMER_REAL_DATA`` overrides."""
    return Path(os.environ.get("VERTEBRAFORMER_REAL_DATA",
                               Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"))


def default_home() -> Path:
    return Path(os.environ.get("VERTEBRAFORMER_HOME", DEFAULT_HOME)).expanduser()


def ensure_env() -> None:
    """Fill unset nnU-Net folder variables with the per-user defaults, telling the user once (on stderr)."""
    global _announced
    missing = [v for v in ENV_VARS if not os.environ.get(v)]
    for var in missing:
        os.environ[var] = str(default_home() / var)
    if missing and not _announced:
        _announced = True
        print(f"vertebraformer: {', '.join(missing)} not set; using {default_home()}/<variable> "
              "(set the variables to choose other folders)", file=sys.stderr)


def _root(var: str) -> Path:
    ensure_env()
    return Path(os.environ[var]).expanduser()


def raw_root() -> Path:
    return _root("nnUNet_raw")


def preprocessed_root() -> Path:
    return _root("nnUNet_preprocessed")


def results_root() -> Path:
    return _root("nnUNet_results")
