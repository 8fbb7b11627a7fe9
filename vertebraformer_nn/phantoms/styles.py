"""Scanner styles: how each source's scans differ (DESIGN.md section 3, MultiSpine-Sim).

A style is a distribution, sampled once per scan (``sample_scan_params``): voxel spacing and slice thickness,
noise level and grain (texture), HU calibration offset and slope, reconstruction sharpness (blur, or edge
enhancement for a bone kernel), orientation of the stored array, the mix of fields of view, axial field of
view, the chance of metal and of intravenous contrast. The four source styles mimic their releases; the extra
styles exist only for held-out tests of domain generalisation. randomise.py widens the source styles' draws far
beyond the real range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .viscera import NO_CONTRAST, Contrast, sample_contrast


@dataclass(frozen=True)
class ScannerStyle:
    name: str
    description: str
    pixel_mm: Tuple[float, float]  # in-plane spacing range
    slice_mm: Tuple[float, ...]  # slice spacings to choose from
    thickness_factor: float  # slice thickness / slice spacing (> 1: overlapping reconstructions)
    noise_sd: Tuple[float, float]  # HU
    noise_grain: Tuple[float, float]  # correlation length of the noise texture, in-plane voxels
    hu_offset: Tuple[float, float]
    hu_slope: Tuple[float, float]
    blur_mm: Tuple[float, float]  # in-plane point-spread sigma of the reconstruction kernel
    sharpen: float  # unsharp-mask gain: a bone kernel overshoots at edges
    kernel: str  # DICOM ConvolutionKernel written for this style
    orientations: Tuple[Tuple[str, float], ...]  # axis codes with weights; the third letter is the slice axis
    fov: Tuple[Tuple[str, float], ...]  # field-of-view kinds with weights
    axial_mm: Tuple[float, float]  # left-right and antero-posterior extent of the field of view
    metal_prob: float
    max_voxels: int = 2_000_000  # larger fields of view get coarser pixels, as on a real scanner
    contrast_prob: float = 0.3  # chance of an intravenous contrast phase


SOURCE_STYLES: Dict[str, ScannerStyle] = {
    "verse": ScannerStyle(
        name="verse", description="VerSe: multi-centre, many sagittal reconstructions stored PIR, sharp-ish, mixed FOV",
        pixel_mm=(1.5, 2.0), slice_mm=(2.0, 2.5, 3.0), thickness_factor=1.0, noise_sd=(18.0, 30.0),
        noise_grain=(0.7, 1.0), hu_offset=(-10.0, 15.0), hu_slope=(0.98, 1.02), blur_mm=(0.5, 0.8), sharpen=0.25,
        kernel="B60f", orientations=(("PIR", 0.5), ("LAS", 0.2), ("RPI", 0.15), ("LPS", 0.15)),
        fov=(("cervical", 0.15), ("cervicothoracic", 0.1), ("thoracic", 0.15), ("thoracolumbar", 0.2),
             ("lumbar", 0.3), ("whole", 0.1)),
        axial_mm=(190.0, 210.0), metal_prob=0.15),
    "ctspine1k": ScannerStyle(
        name="ctspine1k", description="CTSpine1K: re-used abdominal/chest/head-neck CT, soft kernel, axial LPS/RAS",
        pixel_mm=(1.8, 2.2), slice_mm=(2.5, 3.0, 4.0), thickness_factor=1.2, noise_sd=(12.0, 22.0),
        noise_grain=(1.0, 1.5), hu_offset=(-8.0, 8.0), hu_slope=(0.99, 1.01), blur_mm=(0.9, 1.3), sharpen=0.0,
        kernel="B30f", orientations=(("LPS", 0.6), ("RAS", 0.25), ("LPI", 0.15)),
        fov=(("lumbar", 0.2), ("abdomen", 0.15), ("thoracolumbar", 0.25), ("thoracic", 0.25), ("cervical", 0.15)),
        axial_mm=(210.0, 220.0), metal_prob=0.1, contrast_prob=0.6),
    "spineweb": ScannerStyle(
        name="spineweb", description="SpineWeb: thin-slice thoracolumbar spine CT, sharp bone kernel, grainy noise",
        pixel_mm=(1.2, 1.5), slice_mm=(1.5, 2.0), thickness_factor=1.0, noise_sd=(30.0, 45.0),
        noise_grain=(0.5, 0.7), hu_offset=(15.0, 35.0), hu_slope=(1.0, 1.04), blur_mm=(0.4, 0.6), sharpen=0.5,
        kernel="B70s", orientations=(("LPS", 0.4), ("RAI", 0.3), ("LPI", 0.3)),
        fov=(("thoracolumbar", 0.5), ("lumbar", 0.3), ("thoracic", 0.2)),
        axial_mm=(170.0, 185.0), metal_prob=0.2, max_voxels=1_600_000),
    "dicom": ScannerStyle(
        name="dicom", description="DICOM cohort (metastasis patients): bone-kernel axial series, larger FOV",
        pixel_mm=(1.6, 2.0), slice_mm=(2.0, 2.5), thickness_factor=1.0, noise_sd=(22.0, 35.0),
        noise_grain=(0.6, 0.9), hu_offset=(-18.0, 0.0), hu_slope=(0.99, 1.01), blur_mm=(0.5, 0.7), sharpen=0.4,
        kernel="BONE", orientations=(("LPS", 1.0),),
        fov=(("whole", 0.2), ("thoracolumbar", 0.3), ("lumbar", 0.2), ("abdomen", 0.1), ("thoracic", 0.2)),
        axial_mm=(200.0, 210.0), metal_prob=0.35, max_voxels=1_000_000, contrast_prob=0.5),
}

EXTRA_STYLES: Dict[str, ScannerStyle] = {
    "lowdose": ScannerStyle(
        name="lowdose", description="held out: low-dose screening CT, heavy coarse-grained noise, smooth kernel",
        pixel_mm=(1.8, 2.0), slice_mm=(2.5, 3.0), thickness_factor=1.0, noise_sd=(70.0, 100.0),
        noise_grain=(1.2, 1.8), hu_offset=(-5.0, 5.0), hu_slope=(0.99, 1.01), blur_mm=(1.0, 1.4), sharpen=0.0,
        kernel="B31f", orientations=(("LPS", 0.5), ("RAS", 0.5)),
        fov=(("thoracic", 0.4), ("thoracolumbar", 0.4), ("lumbar", 0.2)), axial_mm=(200.0, 210.0), metal_prob=0.1),
    "thickslice": ScannerStyle(
        name="thickslice", description="held out: 5 mm slices with a thick slab profile (old or emergency protocols)",
        pixel_mm=(1.4, 1.6), slice_mm=(5.0,), thickness_factor=1.0, noise_sd=(10.0, 16.0),
        noise_grain=(1.0, 1.3), hu_offset=(-5.0, 5.0), hu_slope=(0.99, 1.01), blur_mm=(0.8, 1.0), sharpen=0.0,
        kernel="B40f", orientations=(("LPS", 1.0),),
        fov=(("thoracolumbar", 0.4), ("lumbar", 0.4), ("whole", 0.2)), axial_mm=(200.0, 210.0), metal_prob=0.1),
    "hushift": ScannerStyle(
        name="hushift", description="held out: miscalibrated scanner (+60..+90 HU, slope 1.08) with an edge-enhancing kernel",
        pixel_mm=(1.5, 1.8), slice_mm=(2.0, 2.5), thickness_factor=1.0, noise_sd=(25.0, 35.0),
        noise_grain=(0.5, 0.8), hu_offset=(60.0, 90.0), hu_slope=(1.06, 1.1), blur_mm=(0.4, 0.6), sharpen=0.8,
        kernel="B80s", orientations=(("RAS", 1.0),),
        fov=(("lumbar", 0.5), ("thoracolumbar", 0.5)), axial_mm=(190.0, 200.0), metal_prob=0.2),
}

ALL_STYLES: Dict[str, ScannerStyle] = {**SOURCE_STYLES, **EXTRA_STYLES}


@dataclass(frozen=True)
class ScanParams:
    """One scan's draw from a style."""

    style: str
    pixel_mm: float
    slice_mm: float
    thickness_mm: float
    noise_sd: float
    noise_grain: float
    hu_offset: float
    hu_slope: float
    blur_mm: float
    sharpen: float
    axcodes: str
    fov: str
    axial_mm: Tuple[float, float]
    metal: bool
    contrast: Contrast = NO_CONTRAST
    noise_grain_z: float = 0.3  # correlation of the noise across slices (voxels)
    cupping_hu: float = 0.0  # beam hardening: HU lost at the centre of the field of view
    streak_hu: float = 220.0  # strength of metal streaks
    tilt_deg: float = 3.0  # largest rotation of the patient about each axis
    fov_offset_mm: float = 8.0  # how far the field of view's centre may sit off the spine
    pv_factor: float = 1.0  # width of partial-volume edges, in voxels
    wide: Tuple[str, ...] = ()  # randomisation groups drawn beyond the style (randomise.GROUPS)


def _choice(rng, weighted):
    names = [n for n, _ in weighted]
    p = np.array([w for _, w in weighted], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_scan_params(style: ScannerStyle, rng: np.random.Generator, fov: Optional[str] = None,
                       axcodes: Optional[str] = None) -> ScanParams:
    slice_mm = float(style.slice_mm[int(rng.integers(len(style.slice_mm)))])
    return ScanParams(
        style=style.name,
        pixel_mm=round(float(rng.uniform(*style.pixel_mm)), 3),
        slice_mm=slice_mm,
        thickness_mm=slice_mm * style.thickness_factor,
        noise_sd=float(rng.uniform(*style.noise_sd)),
        noise_grain=float(rng.uniform(*style.noise_grain)),
        hu_offset=float(rng.uniform(*style.hu_offset)),
        hu_slope=float(rng.uniform(*style.hu_slope)),
        blur_mm=float(rng.uniform(*style.blur_mm)),
        sharpen=style.sharpen,
        axcodes=axcodes or _choice(rng, style.orientations),
        fov=fov or _choice(rng, style.fov),
        axial_mm=(float(style.axial_mm[0]), float(style.axial_mm[1])),
        metal=bool(rng.random() < style.metal_prob),
        contrast=sample_contrast(rng, style.contrast_prob),
        streak_hu=float(rng.uniform(150.0, 300.0)),
    )
