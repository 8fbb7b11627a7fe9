"""The per-case preview picture and the 3D Slicer colour table of the output folder.

The preview shows a sagittal and a coronal view of the CT (bone/soft-tissue window) with the vertebra labels
in colour, each named beside it, and the lesions outlined. Both planes are *curved* along the spine: on each
axial row they pass through the spine's centre there, interpolated between the vertebra centroids, so a
scoliotic or kyphotic spine still shows every vertebra. Pictures look the same whatever the input's
orientation: the arrays are looked at through an (L, P, S) view (a transpose with flips, no copy); only 2D
planes are ever copied, so a 512x512x600 CT costs a few MB here.
"""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import labels
from ..atomic import atomic_path, write_text_atomic
from ..centroids import axcodes

WINDOW = (250.0, 1500.0)  # level, width: fat, muscle, trabecular bone and cortex all told apart
COLOUR_TABLE_NAME = "vertebraformer_colors.ctbl"
FIGURE_HEIGHT_IN = 7.5
DPI = 100
LABEL_ALPHA = 0.4
NAME_GAP_MM = 4.0
NAME_CHAR_IN = 0.075  # width of one character of a level name at the font size used, in inches


def _level_colours() -> Dict[int, Tuple[int, int, int]]:
    """A distinct colour per VerSe code: hues a golden-ratio turn apart along the spine, so neighbouring levels
    always differ strongly; brightness alternates so levels half a turn apart differ too."""
    codes = labels.ANATOMICAL_ORDER_CODES + [c for c in sorted(labels.VERSE_NAME) if c not in labels.VERTEBRA_CODES]
    out = {}
    for i, code in enumerate(codes):
        hue = (0.07 + i * 0.618034) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85 if i % 2 else 0.6, 1.0 if i % 3 else 0.8)
        out[code] = (round(r * 255), round(g * 255), round(b * 255))
    return out


#: RGB (0-255) of every VerSe code; the preview and the Slicer colour table use the same colours.
LEVEL_COLOURS: Dict[int, Tuple[int, int, int]] = _level_colours()


def write_colour_table(out_dir) -> Path:
    """Write ``vertebraformer_colors.ctbl`` into ``out_dir``: a 3D Slicer colour table (lines ``code name R G B A``)
    naming every VerSe code, so Slicer shows C1..L5, T13, L6 on the label maps. Returns its path."""
    lines = ["# VertebraFormer-nn colour table: VerSe codes (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum,",
             "# 27 coccyx, 28 T13). 3D Slicer colour-table format: value name R G B A",
             "0 background 0 0 0 0"]
    for code in sorted(LEVEL_COLOURS):
        r, g, b = LEVEL_COLOURS[code]
        lines.append(f"{code} {labels.name(code)} {r} {g} {b} 255")
    return write_text_atomic(Path(out_dir) / COLOUR_TABLE_NAME, "\n".join(lines) + "\n")


# --- orientation: native array (k, j, i) <-> display index frame (L, P, S) --------------------------------------

class _Frame:
    """Which array axis of a SimpleITK array (k, j, i) runs along L, P and S, and whether it runs backwards."""

    def __init__(self, image: sitk.Image):
        self.source = [0, 0, 0]  # array axis feeding L, P, S
        self.flip = [False, False, False]
        for index_axis, letter in enumerate(axcodes(image)):
            lps_axis = "LPS".find(letter) if letter in "LPS" else "RAI".find(letter)
            self.source[lps_axis] = 2 - index_axis  # index axis i is array axis 2
            self.flip[lps_axis] = letter in "RAI"
        self.shape = tuple(image.GetSize()[2 - a] for a in self.source)  # (nL, nP, nS)
        self.spacing = tuple(image.GetSpacing()[2 - a] for a in self.source)

    def view(self, array: np.ndarray) -> np.ndarray:
        """``array`` seen with axes (L, P, S), index 0 at the right, anterior and foot ends: a view, no copy."""
        v = array.transpose(self.source)
        return v[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]

    def box(self, native_box: Sequence[slice]) -> Tuple[slice, ...]:
        """A bounding box of the native array as slices of the (L, P, S) view."""
        out = []
        for a in range(3):
            s, n = native_box[self.source[a]], self.shape[a]
            out.append(slice(n - s.stop, n - s.start) if self.flip[a] else slice(s.start, s.stop))
        return tuple(out)

    def point(self, image: sitk.Image, world_mm: Sequence[float]) -> np.ndarray:
        """LPS world mm -> continuous (L, P, S) view index."""
        ijk = image.TransformPhysicalPointToContinuousIndex([float(v) for v in world_mm])
        return np.array([(self.shape[a] - 1 - ijk[2 - self.source[a]]) if self.flip[a] else ijk[2 - self.source[a]]
                         for a in range(3)])


def _mask_centres(frame: _Frame, vertebrae: np.ndarray) -> Dict[int, np.ndarray]:
    """Centre of mass of every label, in (L, P, S) view indices, computed inside each label's bounding box."""
    out = {}
    for code, box in enumerate(ndimage.find_objects(vertebrae), start=1):
        if box is not None:
            centre = np.array(ndimage.center_of_mass(vertebrae[box] == code)) + [s.start for s in box]
            out[code] = np.array([(frame.shape[a] - 1 - centre[frame.source[a]]) if frame.flip[a]
                                  else centre[frame.source[a]] for a in range(3)])
    return out


def _track(centres: Mapping[int, np.ndarray], axis: int, frame: _Frame) -> np.ndarray:
    """Per S row, the view index along ``axis`` (0 = L, 1 = P) where the plane cuts: through the centres,
    interpolated between them and held beyond the ends; the middle of the volume without any centre."""
    n_s = frame.shape[2]
    if not centres:
        return np.full(n_s, frame.shape[axis] // 2, dtype=np.intp)
    pts = np.array(sorted(centres.values(), key=lambda c: c[2]))
    track = np.interp(np.arange(n_s), pts[:, 2], pts[:, axis])
    return np.rint(track).astype(np.intp).clip(0, frame.shape[axis] - 1)


def _planes(volume_lps: np.ndarray, track_l: np.ndarray, track_p: np.ndarray):
    """(sagittal (S, P), coronal (S, L)) curved planes of an (L, P, S) view: small 2D copies."""
    n_l, n_p, n_s = volume_lps.shape
    s = np.arange(n_s)[:, None]
    return (volume_lps[track_l[:, None], np.arange(n_p)[None, :], s],
            volume_lps[np.arange(n_l)[None, :], track_p[:, None], s])


def _lesion_projections(lesions_lps: Optional[np.ndarray], native_lesions: Optional[np.ndarray], frame: _Frame):
    """Lesion masks projected through the whole volume onto the sagittal (S, P) and coronal (S, L) canvases, so a
    lesion off the plane (a pedicle, a transverse process) is still outlined. Works box by box."""
    n_l, n_p, n_s = frame.shape
    sag, cor = np.zeros((n_s, n_p), bool), np.zeros((n_s, n_l), bool)
    if native_lesions is None:
        return sag, cor
    for lesion_id, box in enumerate(ndimage.find_objects(native_lesions), start=1):
        if box is None:
            continue
        b = frame.box(box)
        inside = lesions_lps[b] == lesion_id  # (L, P, S) sub-box
        sag[b[2], b[1]] |= inside.any(axis=0).T
        cor[b[2], b[0]] |= inside.any(axis=1).T
    return sag, cor


def _name_spans(plane: np.ndarray, centres: Mapping[int, np.ndarray], axis: int):
    """Per label: (first column, end column, row) on a plane (S rows, columns along view ``axis``), in continuous
    pixel-edge coordinates; the row is its centre's. A label the curved plane misses spans its centre's projection."""
    boxes = ndimage.find_objects(plane)
    out = {}
    for code, c in centres.items():
        box = boxes[code - 1] if code <= len(boxes) else None
        first, end = (c[axis] + 0.5, c[axis] + 0.5) if box is None else (box[1].start, box[1].stop)
        out[code] = (first, end, c[2] + 0.5)
    return out


def write_preview(path, ct: sitk.Image, vertebrae: np.ndarray, lesion_instance_map: Optional[np.ndarray] = None, *,
                  centroids_mm: Optional[Mapping[int, Sequence[float]]] = None, title: str = "") -> Path:
    """Write a PNG of the case: curved sagittal and coronal views with labels coloured and named, lesions outlined.

    ``vertebrae`` (VerSe codes) and ``lesion_instance_map`` are arrays on ``ct``'s grid in SimpleITK order (z, y, x).
    ``centroids_mm`` (VerSe code -> LPS mm; e.g. vertebral-body centroids) places the planes; without it the label
    masks' centres of mass do (the coronal plane then runs a little behind the bodies). Written atomically.
    """
    # A bare Figure renders with Agg and touches neither pyplot's global figure list nor the session's backend.
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    path = Path(path)
    frame = _Frame(ct)
    native_ct = sitk.GetArrayViewFromImage(ct)
    vertebrae = np.asarray(vertebrae)
    if vertebrae.shape != native_ct.shape:
        raise ValueError(f"{path}: vertebra map {vertebrae.shape} does not match the CT array {native_ct.shape}")
    if lesion_instance_map is not None and np.shape(lesion_instance_map) != native_ct.shape:
        raise ValueError(f"{path}: lesion map {np.shape(lesion_instance_map)} does not match the CT array "
                         f"{native_ct.shape}")
    present = {c for c, box in enumerate(ndimage.find_objects(vertebrae), start=1) if box is not None}
    if centroids_mm:
        centres = {int(c): frame.point(ct, p) for c, p in centroids_mm.items() if int(c) in present}
    else:
        centres = _mask_centres(frame, vertebrae)
    track_l, track_p = _track(centres, 0, frame), _track(centres, 1, frame)
    ct_sag, ct_cor = _planes(frame.view(native_ct), track_l, track_p)
    lab_sag, lab_cor = _planes(frame.view(vertebrae), track_l, track_p)
    les_lps = frame.view(lesion_instance_map) if lesion_instance_map is not None else None
    les_sag, les_cor = _lesion_projections(les_lps, lesion_instance_map, frame)

    n_l, n_p, n_s = frame.shape
    sp_l, sp_p, sp_s = frame.spacing
    height = n_s * sp_s
    mm_per_inch = height / (0.9 * FIGURE_HEIGHT_IN)  # the axes fill about 90% of the figure's height
    # Extents in mm, so imshow's equal aspect gives the true proportions; the sagittal has anterior on the left,
    # the coronal the patient's right on the viewer's left (radiological convention).
    views = [("sagittal", ct_sag, lab_sag, les_sag, (0.0, n_p * sp_p, 0.0, height), sp_p, -1),
             ("coronal", ct_cor, lab_cor, les_cor, (n_l * sp_l, 0.0, 0.0, height), -sp_l, +1)]
    widths = [abs(v[4][1] - v[4][0]) for v in views]
    fig_w = min(max(FIGURE_HEIGHT_IN * sum(widths) / height + 0.8, 4.0), 4 * FIGURE_HEIGHT_IN)
    fig = Figure(figsize=(fig_w, FIGURE_HEIGHT_IN + 0.5))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": widths})
    rgba = np.zeros((256, 4))
    for code, colour in LEVEL_COLOURS.items():
        rgba[code, :3], rgba[code, 3] = np.array(colour) / 255.0, LABEL_ALPHA
    lo, hi = WINDOW[0] - WINDOW[1] / 2, WINDOW[0] + WINDOW[1] / 2
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    for ax, (name, img, lab, les, extent, col_mm, side) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent, interpolation="bilinear")
        ax.imshow(rgba[lab], origin="lower", extent=extent, interpolation="nearest")
        if les.any():
            ax.contour(les, levels=[0.5], colors="red", linewidths=1.2, origin="lower", extent=extent)
        axis = 1 if name == "sagittal" else 0
        n_cols = lab.shape[1]
        for code, (first, end, row) in _name_spans(lab, centres, axis).items():
            name_ = labels.name(code)
            # Beside the label (on screen: left of it on the sagittal, right of it on the coronal) when the name fits
            # between it and the picture's edge, else on the label itself.
            free_mm = (first if side < 0 else n_cols - end) * abs(col_mm)
            fits = free_mm >= NAME_GAP_MM + len(name_) * NAME_CHAR_IN * mm_per_inch
            if fits:
                x = extent[0] + (first if side < 0 else end) * col_mm + side * NAME_GAP_MM * np.sign(col_mm)
            else:
                x = extent[0] + (first + end) / 2 * col_mm
            ax.text(x, row * sp_s, name_, fontsize=7, fontweight="bold", color=np.array(LEVEL_COLOURS[code]) / 255.0,
                    va="center", ha=("right" if side < 0 else "left") if fits else "center", path_effects=outline,
                    clip_on=True)
        ax.set_title(f"curved {name}" + ("" if centres else " (no vertebra found)"), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title + ("  -  lesions outlined in red (projected)" if les_sag.any() else ""), fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path
