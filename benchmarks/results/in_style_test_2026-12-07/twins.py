"""The quick protocol's test subjects scanned again in their source's own style (no randomisation beyond the real
range): the same seed and plan give the same subjects (every random draw is keyed by its case and purpose,
phantoms/plan.py rng_for), and ``--randomise 0`` leaves each source's scans in its style. Writes, under OUT, the raw
dataset of the twins (nnU-Net_raw/Dataset592_MultiSpine), each fold's test images (in<fold>/, the test cases of the
protocol's splits in W) and the twins' complete-truth reference (reference/, and
reference_fold<fold>/ with the fold's test cases only).

    python twins.py W OUT [--folds 0 5]
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

DATASET = 592


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path, help="the quick protocol's work folder (its splits and SIM settings)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 5])
    ap.add_argument("--cases-per-source", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.environ["nnUNet_raw"] = str(a.out / "nnUNet_raw")
    os.environ.setdefault("nnUNet_preprocessed", str(a.out / "nnUNet_preprocessed"))
    os.environ.setdefault("nnUNet_results", str(a.out / "nnUNet_results"))
    from vertebraformer_nn.dataset_conversion import convert_source, finalize
    from vertebraformer_nn.demo.environment import link_or_copy
    from vertebraformer_nn.demo.reference import truth_reference
    from vertebraformer_nn.phantoms import generate
    from vertebraformer_nn.sources import SOURCES

    sim = a.out / "SIM"
    if not (sim / "ground_truth" / "index.json").is_file():
        shutil.rmtree(sim, ignore_errors=True)
        generate(sim, cases_per_source=a.cases_per_source, seed=a.seed, previews=False, progress=False, randomise=0.0)
    raw = a.out / "nnUNet_raw" / f"Dataset{DATASET}_MultiSpine"
    if not (raw / "dataset.json").is_file():
        for i, source in enumerate(SOURCES):
            convert_source(source, sim / source, DATASET, append=i > 0, progress=False)
        final = finalize(DATASET, num_processes=2)
        if not final.ok:
            raise RuntimeError(f"finalize failed: {final.errors or final.integrity}")
    n = truth_reference(sim, list(SOURCES), a.out / "reference", name="case", orientation="RAS")
    print(f"reference: {n} cases")
    splits = json.loads(next((a.work / "nnUNet_preprocessed").glob("Dataset*/splits_final.json")).read_text())
    for fold in a.folds:
        images, reference = a.out / f"in{fold}", a.out / f"reference_fold{fold}"
        for folder in (images, reference):
            shutil.rmtree(folder, ignore_errors=True)
        for case in splits[fold]["val"]:
            link_or_copy(raw / "imagesTr" / f"{case}_0000.nii.gz", images / f"{case}_0000.nii.gz")
            for suffix in (".nii.gz", "_lesion.nii.gz", "_ctd.json"):  # the fold's test cases only
                link_or_copy(a.out / "reference" / f"{case}{suffix}", reference / f"{case}{suffix}")
        print(f"fold {fold}: {len(splits[fold]['val'])} twin test images in {images}, their truth in {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
