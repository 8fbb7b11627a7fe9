"""DICOM SEG written with highdicom: BINARY, coded segments, referencing the CT series' instances, memory-bounded.

highdicom builds a SEG from a stack of boolean masks (frames x rows x cols x segments: the 25 vertebrae of a
512x512x600 CT would take 3.9 GB) or from a label map of segments that do not overlap (one byte per voxel). Segments
are therefore written in **layers**: label maps of non-overlapping segments (all vertebrae in one, the lesions in
another), each turned into frames by highdicom (empty frames omitted), the frames then joined into one SEG
(SegmentsOverlap YES when layers overlap; the dimension index of each frame's position renumbered over all frames).
Memory: the layers, a byte per voxel each, and the encoded frames.

Coding (``coded_concepts``): a segment labelled "<name> vertebra" is that vertebra's SNOMED CT concept (T13 and L6:
the generic "Vertebra"), category "Anatomical Structure"; a lesion label (``common.is_lesion``) is "Lesion",
category "Morphologically Abnormal Structure"; any other label is coded as a generic vertebra.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping, Sequence

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .. import __version__, labels
from ..image_io import write_dicom_dataset
from .coded_concepts import ABNORMAL_STRUCTURE, ANATOMICAL_STRUCTURE, GENERIC_VERTEBRA, vertebra_concept
from .common import MANUFACTURER, derived_uid, is_lesion, masks_on_grid, reference_datasets, series_grid

__all__ = ["write_seg", "write_layered_seg", "segment_description"]


def segment_description(number: int, label: str) -> hd.seg.SegmentDescription:
    """A segment coded from its label (module docstring), found by an automatic algorithm (this package)."""
    name = label[: -len(" vertebra")] if label.endswith(" vertebra") else None
    if is_lesion(label):
        category, concept = ABNORMAL_STRUCTURE, codes.SCT.Lesion
    elif name in labels.VERSE_CODE:
        category, concept = ANATOMICAL_STRUCTURE, vertebra_concept(labels.VERSE_CODE[name])
    else:
        category, concept = ANATOMICAL_STRUCTURE, GENERIC_VERTEBRA
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=category,
        segmented_property_type=concept, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=MANUFACTURER, version=__version__, family=codes.cid7162.ArtificialIntelligence))


def write_seg(masks: Mapping[str, sitk.Image], reference_files: Sequence[Path], path) -> Path:
    """Write one BINARY DICOM SEG holding a segment per non-empty mask, labelled with the dict key, referencing the
    CT series ``reference_files``. Masks are binary images on the CT grid (any non-zero voxel is inside); they may
    overlap (a lesion inside its vertebra)."""
    path = Path(path)
    datasets = reference_datasets(reference_files, path)
    grid = series_grid(datasets, path)
    arrays = {name: a for name, a in masks_on_grid(masks, grid, path).items() if a.any()}
    if not arrays:
        raise ValueError(f"{path}: every mask is empty; a DICOM SEG needs at least one segment")
    layers: list[np.ndarray] = []
    for number, mask in enumerate(arrays.values(), start=1):  # each mask into the first layer it does not overlap
        layer = next((la for la in layers if not la[mask].any()), None)
        if layer is None:
            layer = np.zeros(mask.shape, dtype=np.uint8 if len(arrays) < 256 else np.uint16)
            layers.append(layer)
        layer[mask] = number
    return write_layered_seg(layers, list(arrays), datasets, path, derived_uid(datasets, "seg", arrays))


def write_layered_seg(layers: Sequence[np.ndarray], segment_labels: Sequence[str], datasets: Sequence[Dataset],
                      path, uid_seed: str, series_description: str = "Segmentation") -> Path:
    """Write a BINARY SEG from label maps (``layers``: (frames, rows, cols) on the grid of ``datasets``, the sorted
    headers of the CT series, values = 1-based index into ``segment_labels``; segments within a layer do not
    overlap). UIDs derive from ``uid_seed``."""
    descriptions = [segment_description(n, label) for n, label in enumerate(segment_labels, start=1)]
    parts = []
    for k, layer in enumerate(layers):
        if not layer.any():
            continue
        parts.append(hd.seg.Segmentation(
            source_images=list(datasets), pixel_array=layer, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=pydicom.uid.generate_uid(
                entropy_srcs=[uid_seed, "series"]),
            series_number=300, sop_instance_uid=pydicom.uid.generate_uid(entropy_srcs=[uid_seed, "instance"]),
            instance_number=1, manufacturer=MANUFACTURER,
            manufacturer_model_name="vertebraformer_nn.dicom_annotations", software_versions=__version__,
            device_serial_number="0", series_description=series_description, omit_empty_frames=True))
    if not parts:
        raise ValueError(f"{path}: every layer is empty; a DICOM SEG needs at least one segment")
    overlap = len(parts) > 1 and _layers_overlap([la for la in layers if la.any()])
    return write_dicom_dataset(_joined(parts, overlap), path)


def _layers_overlap(layers: Sequence[np.ndarray]) -> bool:
    """Whether any voxel is in two layers; slice by slice, so no full-volume temporary."""
    for k in range(layers[0].shape[0]):
        seen = np.zeros(layers[0].shape[1:], dtype=bool)
        for layer in layers:
            inside = layer[k] > 0
            if (seen & inside).any():
                return True
            seen |= inside
    return False


def _joined(parts: list[hd.seg.Segmentation], overlap: bool) -> hd.seg.Segmentation:
    """The first SEG with the frames of the others appended (pixels, per-frame groups), frame count, overlap flag and
    dimension indices of the positions made right for the whole."""
    seg = parts[0]
    if len(parts) > 1:
        rows, cols = int(seg.Rows), int(seg.Columns)
        items, bits = [], []
        for part in parts:
            n = int(part.NumberOfFrames)
            shared = part.SharedFunctionalGroupsSequence[0]
            for item in part.PerFrameFunctionalGroupsSequence:  # one segment per part: highdicom shares its id
                if "SegmentIdentificationSequence" in shared and "SegmentIdentificationSequence" not in item:
                    item.SegmentIdentificationSequence = copy.deepcopy(shared.SegmentIdentificationSequence)
            items += list(part.PerFrameFunctionalGroupsSequence)
            if (rows * cols) % 8 == 0:  # frames start on byte boundaries: join the packed bytes
                bits.append(bytes(part.PixelData[: n * rows * cols // 8]))
            else:
                bits.append(pydicom.pixels.unpack_bits(part.PixelData)[: n * rows * cols])
        if isinstance(bits[0], bytes):
            data = b"".join(bits)
            data += b"\0" * (len(data) % 2)
        else:
            data = pydicom.pixels.pack_bits(np.concatenate(bits))
        if "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]:
            del seg.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence
        seg.PerFrameFunctionalGroupsSequence = pydicom.Sequence(items)
        seg.NumberOfFrames = len(items)
        seg.PixelData = data
    seg.SegmentsOverlap = "YES" if overlap else "NO"
    _renumber_positions(seg)
    return seg


def _renumber_positions(seg: hd.seg.Segmentation) -> None:
    """DimensionIndexValues = (segment number, rank of the frame's position along the slice normal, 1-based)."""
    iop = np.array([float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                    .ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    along = [round(float(np.dot([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], normal)), 4)
             for item in seg.PerFrameFunctionalGroupsSequence]
    rank = {a: r for r, a in enumerate(sorted(set(along)), start=1)}
    shared = seg.SharedFunctionalGroupsSequence[0]
    for item, a in zip(seg.PerFrameFunctionalGroupsSequence, along):
        identification = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        number = int(identification[0].ReferencedSegmentNumber)
        item.FrameContentSequence[0].DimensionIndexValues = [number, rank[a]]
