"""DICOM annotations of a CT series: DICOM SEG (via highdicom) and RTSTRUCT (via pydicom), written and read.

Writers take binary masks on the CT grid (as :func:`vertebraformer_nn.image_io.read_dicom_series` returns it, or any
reorientation of it) plus the CT's files, and reference those files. Readers put every segment / ROI onto a
reference image's grid, matching frames and contours by their physical position (never by frame order), so that
a SEG covering part of the CT, or a reference image in another axis order (RAS after conversion), still maps
voxel for voxel. Anything that does not fall on the reference grid is an :class:`ImageReadError` naming the file.

Modules: :mod:`.common` (reference series, grids, file checks), :mod:`.coded_concepts` (SNOMED CT vertebrae and
lesions), :mod:`.seg_write` (memory-bounded, by layers), :mod:`.seg_read` (any writer's SEG), :mod:`.rtstruct_write`,
:mod:`.rtstruct_read`, :mod:`.prediction_seg` (``predict --dicom-seg``).
"""
from __future__ import annotations

from .rtstruct_read import read_rtstruct
from .rtstruct_write import write_rtstruct
from .seg_read import read_seg
from .seg_write import write_seg

__all__ = ["write_seg", "write_rtstruct", "read_seg", "read_rtstruct"]
