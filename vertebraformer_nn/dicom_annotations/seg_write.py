"""DICOM SEG written with highdicom: one BINARY segment per mask, referencing the CT series' instances."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.sr.codedict import codes

from .. import __version__
from ..image_io import write_dicom_dataset
from .common import MANUFACTURER, derived_uid, is_lesion, masks_on_grid, reference_datasets, series_grid

__all__ = ["write_seg"]


def write_seg(masks: Mapping[str, sitk.Image], reference_files: Sequence[Path], path) -> Path:
    """Write one BINARY DICOM SEG holding a segment per non-empty mask, labelled with the dict key, referencing the
    CT series ``reference_files``. Masks are binary images on the CT grid (any non-zero voxel is inside)."""
    path = Path(path)
    datasets = reference_datasets(reference_files, path)
    grid = series_grid(datasets, path)
    arrays = {name: a for name, a in masks_on_grid(masks, grid, path).items() if a.any()}
    if not arrays:
        raise ValueError(f"{path}: every mask is empty; a DICOM SEG needs at least one segment")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=MANUFACTURER, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, name in enumerate(arrays, start=1):
        lesion = is_lesion(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=(
                    codes.SCT.MorphologicallyAbnormalStructure if lesion else codes.SCT.AnatomicalStructure
                ),
                segmented_property_type=codes.SCT.Lesion if lesion else codes.SCT.Vertebra,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    # Stacked-segments style (frames, rows, cols, segments): segments may overlap (a lesion inside its vertebra).
    pixels = np.stack(list(arrays.values()), axis=-1)
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid(datasets, "seg-series", arrays),
        series_number=300,
        sop_instance_uid=derived_uid(datasets, "seg-instance", arrays),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="vertebraformer_nn.dicom_annotations",
        software_versions=__version__,
        device_serial_number="0",
        series_description="Segmentation",
        omit_empty_frames=True,
    )
    return write_dicom_dataset(seg, path)
