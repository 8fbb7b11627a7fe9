"""How closely the phantoms' vertebrae match real ones.

Real manual vertebra masks (the VerSe masks "for shapes" of ../shared/data/real, MANIFEST.md; never the files
kept for checking) are cut out one vertebra at a time and resampled to a 1 mm grid aligned with LPS. A model
vertebra, given as a signed-distance function in its own frame, is compared with each by the Dice after a
similarity alignment: centroids on each other, principal axes on each other (each axis matched to the
anatomical axis it is closest to, so that left stays left and up stays up), and volumes equal. Used by
tests/test_phantoms.py and tools/fit_vertebra_shapes.py; reads the real masks, writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import labels
from ..centroids import read_verse_ctd

#: (mask, centroid file, subject) of every real mask that may serve as a shape, relative to the real-data folder.
SHAPE_MASKS: Tuple[Tuple[str, str, str], ...] = (
    ("verse_sub-verse004/sub-verse004_seg-vert_msk.nii.gz", "verse_sub-verse004/sub-verse004_seg-subreg_ctd.json",
     "verse004"),
    ("verse_masks_only/sub-verse010_seg-vert_msk.nii.gz", "verse_masks_only/sub-verse010_seg-subreg_ctd.json",
     "verse010"),
    ("verse_masks_only/sub-gl003_dir-ax_seg-vert_msk.nii.gz", "verse_masks_only/sub-gl003_dir-ax_seg-subreg_ctd.json",
     "gl003"),
    ("verse_masks_only/sub-gl017_seg-vert_msk.nii.gz", "verse_masks_only/sub-gl017_seg-subreg_ctd.json", "gl017"),
)
#: Published Genant grades of the shape subjects (MANIFEST.md): a collapsed body is no template for a healthy one.
FRACTURED: Dict[Tuple[str, str], int] = {("verse004", "T9"): 2, ("verse004", "T10"): 2, ("verse004", "L1"): 3}

SdfFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class RealVertebra:
    subject: str
    code: int
    mask: np.ndarray  # float32 (S, P, L) occupancy in [0, 1], linearly resampled from the real mask
    origin: np.ndarray  # LPS mm of voxel (0, 0, 0); axes run +L, +P, +S
    spacing: float
    centroid: np.ndarray  # the VerSe centroid (LPS mm)
    up: np.ndarray  # unit vector up the spine here, from the neighbours' centroids
    posterior: Optional[np.ndarray] = None  # where given, the way to the back (C1: taken from C2, which has a body)

    @property
    def name(self) -> str:
        return labels.name(self.code)

    @property
    def fractured(self) -> bool:
        return (self.subject, self.name) in FRACTURED

    def points(self, threshold: float = 0.5) -> np.ndarray:
        """(N, 3) LPS mm of the voxels inside."""
        return self.origin + self.spacing * np.argwhere(self.mask >= threshold)[:, ::-1]

    def hint_frame(self) -> np.ndarray:
        """Columns left, posterior, up: up from the neighbours, posterior from the centroid to the centre of mass
        (for C1, whose centroid sits in its ring, C2's)."""
        post = (self.points().mean(axis=0) - self.centroid) if self.posterior is None else self.posterior.copy()
        post -= post @ self.up * self.up
        post /= np.linalg.norm(post)
        return np.column_stack([np.cross(post, self.up), post, self.up])


def _up_vectors(centroids: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    order = labels.sort_anatomically(centroids)
    out = {}
    for k, code in enumerate(order):
        above = centroids[order[max(k - 1, 0)]]
        below = centroids[order[min(k + 1, len(order) - 1)]]
        u = above - below
        out[code] = u / np.linalg.norm(u)
    return out


def load_real_vertebrae(root, spacing: float = 1.0, margin_mm: float = 4.0,
                        codes: Optional[Iterable[int]] = None) -> List[RealVertebra]:
    """Every vertebra (or those of ``codes``) of every shape mask under ``root`` (the real-data folder), resampled
    to ``spacing`` mm."""
    wanted = None if codes is None else set(codes)
    out = []
    for mask_rel, ctd_rel, subject in SHAPE_MASKS:
        image = sitk.ReadImage(str(Path(root) / mask_rel))
        if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
            image = sitk.Round(image)  # some VerSe masks are stored as floats
        image = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkUInt8), "LPS")
        arr = sitk.GetArrayViewFromImage(image)
        centroids = read_verse_ctd(Path(root) / ctd_rel, image)
        ups = _up_vectors(centroids)
        pad = [int(np.ceil(margin_mm / sp)) + 1 for sp in image.GetSpacing()]
        for code, box in enumerate(ndimage.find_objects(arr), start=1):
            if box is None or code not in centroids or (wanted is not None and code not in wanted):
                continue
            lo_i = [max(box[2 - a].start - pad[a], 0) for a in range(3)]
            hi_i = [min(box[2 - a].stop + pad[a], image.GetSize()[a]) for a in range(3)]
            crop = sitk.RegionOfInterest(image, [h - l for l, h in zip(lo_i, hi_i)], lo_i)
            lo = np.asarray(crop.GetOrigin())
            hi = np.asarray(crop.TransformIndexToPhysicalPoint([n - 1 for n in crop.GetSize()]))
            size = [int(np.floor((h - l) / spacing)) + 1 for l, h in zip(lo, hi)]
            binary = sitk.Cast(sitk.BinaryThreshold(crop, code, code, 1, 0), sitk.sitkFloat32)
            res = sitk.Resample(binary, size, sitk.Transform(), sitk.sitkLinear, tuple(lo), (spacing,) * 3,
                                (1, 0, 0, 0, 1, 0, 0, 0, 1), 0.0, sitk.sitkFloat32)
            out.append(RealVertebra(subject, code, sitk.GetArrayFromImage(res), lo, spacing,
                                    np.asarray(centroids[code]), ups[code]))
    by = {(r.subject, r.code): r for r in out}
    for r in out:
        c2 = by.get((r.subject, 2)) if r.code == 1 else None
        if c2 is not None:
            r.posterior = c2.hint_frame()[:, 1]
    return out


def principal_frame(points: np.ndarray, hint: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(centroid, rotation) whose columns are the principal axes, each matched and signed to the hint column
    (left, posterior, up) it is closest to; right-handed."""
    c = points.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((points - c).T))
    frame = np.zeros((3, 3))
    free = [0, 1, 2]
    for axis in np.argsort(-np.max(np.abs(vecs.T @ hint), axis=0)):  # the best-matched hint axis first
        k = max(free, key=lambda j: abs(vecs[:, j] @ hint[:, axis]))
        free.remove(k)
        frame[:, axis] = vecs[:, k] * np.sign(vecs[:, k] @ hint[:, axis])
    if np.linalg.det(frame) < 0:
        frame[:, 0] *= -1.0
    return c, frame


def model_points(sdf: SdfFn, lo: Sequence[float], hi: Sequence[float], spacing: float = 1.0) -> np.ndarray:
    """(N, 3) points of a 1 mm grid over the box [lo, hi] (model frame) where the model is inside."""
    axes = [np.arange(a, b + spacing, spacing, dtype=np.float32) for a, b in zip(lo, hi)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = sdf(x, y, z) < 0
    return np.column_stack([x[inside], y[inside], z[inside]]).astype(np.float64)


def aligned_dice(real: RealVertebra, sdf: SdfFn, lo: Sequence[float], hi: Sequence[float],
                 hint: Optional[np.ndarray] = None) -> float:
    """Dice of a model vertebra (``sdf`` in its frame, inside the box [lo, hi]) and a real one, after matching
    centroids, principal axes and volume. The model's frame is its own hint (x left, y posterior, z up)."""
    mp = model_points(sdf, lo, hi, real.spacing)
    rp = real.points()
    if len(mp) < 10 or len(rp) < 10:
        return 0.0
    cm, fm = principal_frame(mp, np.eye(3))
    cr, fr = principal_frame(rp, real.hint_frame() if hint is None else hint)
    scale = (len(rp) / len(mp)) ** (1.0 / 3.0)
    # Volumes are matched, so |model| = |real| and the Dice is the fraction of real voxels inside the model.
    local = cm + ((rp - cr) @ fr @ fm.T) / scale
    inside = sdf(*(local[:, a].astype(np.float32) for a in range(3))) < 0
    return float(np.count_nonzero(inside) / len(rp))


def union_sdf(parts: Sequence) -> SdfFn:
    """The signed distance of a union of sdf.py primitives (the minimum)."""
    def sdf(x, y, z):
        d = parts[0].sdf(x, y, z)
        for p in parts[1:]:
            d = np.minimum(d, p.sdf(x, y, z))
        return d

    return sdf
