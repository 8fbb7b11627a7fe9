"""Which folds exist: a fold beyond ``splits_final.json`` is an error (nnU-Net would silently train a random 80:20
split), and a leave-one-domain-out fold says which domain it holds out (its validation cases are that domain)."""
from __future__ import annotations

import json
import os
from typing import Optional, Union


class FoldError(ValueError):
    """A fold that the splits file does not define."""


def read_splits(preprocessed_dataset_folder_base: str) -> Optional[list]:
    """The folds of ``splits_final.json`` in the preprocessed dataset folder, None when there is none."""
    path = os.path.join(preprocessed_dataset_folder_base, "splits_final.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_fold(fold: Union[int, str], splits: Optional[list]) -> Optional[dict]:
    """The splits entry of ``fold`` (None for 'all'). Without a splits file nnU-Net creates 5 folds, so 0-4.

    Raises FoldError for any other fold (nnU-Net would silently train a random 80:20 split)."""
    if fold == "all":
        return None
    try:
        fold = int(fold)
    except (TypeError, ValueError):
        raise FoldError(f"fold must be an integer or 'all', not {fold!r}") from None
    n = len(splits) if splits is not None else 5
    if not 0 <= fold < n:
        where = "splits_final.json defines" if splits is not None else "without a splits_final.json nnU-Net makes"
        extra = ""
        if splits is not None:
            lodo = [f"{i} ({e['held_out_domain']} held out)" for i, e in enumerate(splits) if "held_out_domain" in e]
            extra = f"; folds 0-{min(n, 5) - 1} are cross-validation" + (
                f", leave-one-domain-out: {', '.join(lodo)}" if lodo else "")
        raise FoldError(f"fold {fold} does not exist: {where} {n} folds (0-{n - 1}){extra}. nnU-Net would silently "
                        f"train a random 80:20 split instead; refusing.")
    return splits[fold] if splits is not None else {}


def fold_held_out_domain(preprocessed_dataset_folder_base: Optional[str], fold: Union[int, str]) -> Optional[str]:
    """The domain a leave-one-domain-out fold holds out (None for other folds); FoldError for a missing fold."""
    if preprocessed_dataset_folder_base is None:
        return None
    entry = check_fold(fold, read_splits(preprocessed_dataset_folder_base))
    return (entry or {}).get("held_out_domain")
