"""Run settings a trainer reads from the environment (as nnU-Net passes ``nnUNet_compile`` and the like past its
command line): one parser, so that every variable fails the same way, naming itself and the value."""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

__all__ = ["positive_from_env"]


def positive_from_env(name: str, what: str = "number",
                      kind: Callable[[str], Union[int, float]] = float) -> Optional[Union[int, float]]:
    """``$name`` as a positive ``kind`` (float, or int for a count: "2.5" is then not one); None when unset or empty; a
    ValueError naming the variable, its value and ``what`` it should be otherwise."""
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a {what}") from None
    if not number > 0:
        raise ValueError(f"{name}={value!r} must be a positive {what}")
    return number
