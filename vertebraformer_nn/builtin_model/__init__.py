"""The model that ships with the package: ``vertebraformer predict -i CT -o OUT`` without ``-m``/``-d`` uses it.

It is an ordinary nnU-Net model folder (plans.json, dataset.json, postprocessing.json, fold_<f>/checkpoint_final.pth)
with its coarse whole-field sibling (``..._3d_lowres``), trained on MultiSpine-Sim phantoms only; the checkpoints
hold only the weights (float16) and what prediction reads (``trainers.checkpoints.inference_checkpoint``). What it
was trained on, how, what it scores and where it fails: ``MODEL_CARD.md`` beside this file. It is written by
``tools/package_builtin_model.py`` from a trained model folder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
#: the fine model; its coarse sibling lies beside it, as in nnUNet_results
FOLDER = HERE / "VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres"
MODEL_CARD = HERE / "MODEL_CARD.md"
CHECKPOINT = "checkpoint_final.pth"


class BuiltinModelMissing(FileNotFoundError):
    """The package was installed without the built-in model's files."""


def builtin_model() -> Tuple[Path, List[str]]:
    """(the built-in model folder, its folds): every ``fold_<f>`` with a checkpoint, as ``predict -f`` names them."""
    folds = sorted(p.parent.name[len("fold_"):] for p in FOLDER.glob(f"fold_*/{CHECKPOINT}"))
    if not (FOLDER / "plans.json").is_file() or not folds:
        raise BuiltinModelMissing(f"the built-in model is not installed ({FOLDER} has no plans.json or no "
                                  f"fold_*/{CHECKPOINT}); name a model with -m or -d")
    return FOLDER, folds


def builtin_checkpoint(coarse: bool = False) -> Path:
    """The first shipped fold's checkpoint of the fine model, or with ``coarse`` of its coarse whole-field sibling
    (``3d_lowres``): the weights a fine-tuning of that configuration starts from (``train -pretrained_weights``,
    ``demo --start builtin``). The two networks differ only in their positional embedding, which
    ``load_pretrained_weights`` resamples, so the wrong one would load without a word."""
    folder, folds = builtin_model()
    if coarse:
        from ..inference.coarse_stage import sibling_folder

        folder = sibling_folder(folder)
    path = folder / f"fold_{folds[0]}" / CHECKPOINT
    if not path.is_file():
        raise BuiltinModelMissing(f"the built-in model has no {path.relative_to(HERE)}")
    return path
