"""One generated scan, rendered and acquired, as the writers receive it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import SimpleITK as sitk

from .anatomy import Subject
from .grid import Grid
from .plan import CasePlan
from .render import Placement, Rendered
from .styles import ScanParams


@dataclass
class Case:
    plan: CasePlan
    subject: Subject
    params: ScanParams
    grid: Grid
    placement: Placement
    rendered: Rendered
    ct: np.ndarray  # int16 (k, j, i), stored CT values

    @property
    def subject_id(self) -> str:
        return self.plan.extra.get("subject", self.subject.subject_id)

    def ct_image(self) -> sitk.Image:
        return self.grid.image(self.ct)

    def label_image(self, drop_partial: bool = False, dtype=np.uint8) -> sitk.Image:
        """The vertebra map on this grid; ``drop_partial`` sets vertebrae cut by the head/foot border to 0."""
        arr = self.rendered.vertebrae
        if drop_partial and self.rendered.partial:
            arr = np.where(np.isin(arr, self.rendered.partial), 0, arr).astype(arr.dtype)
        return self.grid.image(arr.astype(dtype))

    def lesion_image(self) -> sitk.Image:
        return self.grid.image(self.rendered.lesions)

    def labelled_codes(self, drop_partial: bool) -> List[int]:
        return [c for c in self.rendered.levels if not (drop_partial and c in self.rendered.partial)]

    def centroids(self, drop_partial: bool = False) -> Dict[int, np.ndarray]:
        return {c: p for c, p in self.rendered.centroids.items() if not (drop_partial and c in self.rendered.partial)}
