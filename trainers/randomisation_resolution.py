"""Domain randomisation of the acquisition grid: slice thickness along head-foot, pixel size in the axial plane,
with the partial-volume averaging a coarser acquisition has (issue 16 part 2, training side).

nnU-Net's ``SimulateLowResolutionTransform`` (which nnU-Net's own pipeline still applies, isotropically, at most
2x) samples down with nearest neighbours and back up linearly: aliasing, not the slab average a thick slice or a
large pixel records. :class:`AcquisitionGridTransform` does what it does (torch's ``interpolate`` down, then
linearly back up) with the two changes a CT acquisition needs:

* the factors are anisotropic and physical: a slice thickness in mm along the plans' head-foot axis (thick slices
  are the commonest real difference: 3-5 mm clinical series against 1 mm research ones), one pixel size in mm for
  both axial axes (a large reconstruction field of view);
* the downsampling averages over each coarse voxel (``area``: box averages, the partial-volume effect), so a
  thin cortex or disc comes out as the intermediate value a thick slice would hold.

Conventions (layout, padding kept, numpy randomness) as in :mod:`.randomisation_intensity`.
"""
from __future__ import annotations

from typing import Sequence

from torch.nn.functional import interpolate

from .randomisation_intensity import CTTransform, NormalisedCT, Range, uniform


class AcquisitionGridTransform(CTTransform):
    """Acquire the patch on a coarser grid, then resample it back to the patch's grid: slice thickness
    ``thickness_mm`` along head-foot, pixel size ``pixel_mm`` in the axial plane (each never finer than the
    patch's own spacing), box-averaged down (partial volume), trilinearly up."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int,
                 thickness_mm: Range = (1.0, 10.0), pixel_mm: Range = (0.5, 2.5)):
        super().__init__(window, spacing, si_axis)
        self.thickness_mm, self.pixel_mm = tuple(thickness_mm), tuple(pixel_mm)

    def get_parameters(self, **data_dict) -> dict:
        thickness, pixel = uniform(self.thickness_mm), uniform(self.pixel_mm)
        scales = [min(1.0, self.spacing[axis] / (thickness if axis == self.si_axis else pixel)) for axis in range(3)]
        return {"scales": scales}

    def randomise(self, image, seg, scales=(1.0, 1.0, 1.0)):
        shape = tuple(image.shape[1:])
        coarse = [max(1, int(round(n * s))) for n, s in zip(shape, scales)]
        if list(coarse) == list(shape):
            return image
        down = interpolate(image[None].float(), size=coarse, mode="area")
        return interpolate(down, size=shape, mode="trilinear", align_corners=False)[0].to(image.dtype)

