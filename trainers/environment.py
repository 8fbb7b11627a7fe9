"""Run settings a trainer reads from the environment (as nnU-Net passes ``nnUNet_compile`` and the like past its
command line): one parser, so that every variable fails the same way, naming itself and the value."""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["positive_from_env"]


def positive_from_env(name: str, what: str = "number") -> Optional[float]:
    """``$name`` as a positive float; None when unset or empty; a ValueError naming the variable, its value and
    ``what`` it should be otherwise."""
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a {what}") from None
    if not number > 0:
        raise ValueError(f"{name}={value!r} must be a positive {what}")
    return number
