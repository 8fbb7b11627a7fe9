"""Raw headers of NIfTI, NRRD and MetaImage files, checked before ITK reads them: ITK patches or ignores what they say.

Measured with SimpleITK 2.5.7 (ITK 5.4): a NIfTI pixdim of 0 becomes 1 mm; a truncated ``.nii`` or ``.nii.gz`` reads
as an image whose missing part is zeros; corrupt compressed data in ``.nii.gz``, ``.nrrd`` and ``.mha`` reads as
garbage without an error; a NaN origin in a MetaImage header becomes 0; NaN in an NRRD header gives a message about
"space vector coefficients". So, before ITK reads a file:

* **geometry fields** that the file's geometry is built from must be finite, spacings positive: NIfTI ``pixdim``
  (and ``qoffset``/``quatern`` when ``qform_code`` > 0, ``srow_*`` when ``sform_code`` > 0), NRRD ``space
  directions``/``spacings``/``space origin``, MetaImage ``ElementSpacing``/``Offset``/``TransformMatrix``;
  the message names the file and the field;
* **voxel data** must be all there: an uncompressed NIfTI at least as long as its header declares; compressed data
  (gzip in ``.nii.gz`` and NRRD ``encoding: gzip``, zlib in MetaImage ``CompressedData = True``)
  decompressed as a stream, in chunks (memory stays small), to its end marker and checksum, and for NIfTI to the
  declared number of bytes. This reads a compressed file twice (here and in ITK); decompression runs at several
  hundred MB/s, about a second for a 512x512x600 CT, small next to a prediction.

Files whose data live elsewhere in ways not parsed here (NRRD/MetaImage data file lists and patterns) are left to
ITK, which refuses data shorter than declared for these formats itself.
"""
from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterable

from .checks import ImageReadError, error_summary, fmt, image_suffix

__all__ = ["check_file_header"]

_CHUNK = 1 << 22  # 4 MB of compressed input per step
_OUT = 1 << 24  # at most 16 MB of decompressed output at a time


def check_file_header(path: Path) -> None:
    """Raise :class:`ImageReadError` naming ``path`` and the field when its header or voxel data is unusable
    (module docstring); image suffixes other than NIfTI, NRRD and MetaImage pass unchecked."""
    suffix = image_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        _check_nifti(path, compressed=suffix == ".nii.gz")
    elif suffix in (".nrrd", ".nhdr"):
        _check_nrrd(path)
    elif suffix in (".mha", ".mhd"):
        _check_metaimage(path)


# ------------------------------------------------------------------------------------------------ NIfTI
# (header size, endian-free layout): dim, datatype/bitpix, pixdim, vox_offset, qform/sform codes, quatern, srow
_NIFTI1 = dict(dim=(40, "8h"), bitpix=(72, "h"), pixdim=(76, "8f"), vox_offset=(108, "f"), qform_code=(252, "h"),
               sform_code=(254, "h"), quatern=(256, "6f"), srow=(280, "12f"))
_NIFTI2 = dict(dim=(16, "8q"), bitpix=(14, "h"), pixdim=(104, "8d"), vox_offset=(168, "q"), qform_code=(344, "i"),
               sform_code=(348, "i"), quatern=(352, "6d"), srow=(400, "12d"))


def _nifti_fields(header: bytes, path: Path) -> dict:
    for endian in "<>":
        for size, layout in ((348, _NIFTI1), (540, _NIFTI2)):
            if len(header) >= size and struct.unpack(endian + "i", header[:4])[0] == size:
                out = {}
                for name, (offset, code) in layout.items():
                    values = struct.unpack_from(endian + code, header, offset)
                    out[name] = values if len(values) > 1 else values[0]
                return out
    raise ImageReadError(f"{path}: unreadable NIfTI file (bad header size field: not NIfTI-1 or NIfTI-2)")


def _check_nifti(path: Path, compressed: bool) -> None:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
    except (OSError, EOFError, zlib.error) as e:
        raise ImageReadError(f"{path}: unreadable NIfTI file ({error_summary(e)})") from None
    h = _nifti_fields(header, path)
    ndim = int(h["dim"][0])
    spatial = [float(p) for p in h["pixdim"][1: 1 + max(1, min(ndim, 3))]]
    # ITK and nibabel silently turn a pixdim of 0 ('spacing unknown') into 1 mm; refuse it instead.
    if any(not math.isfinite(p) or p == 0 for p in spatial):
        raise ImageReadError(f"{path}: missing or zero voxel spacing in the NIfTI header (pixdim {fmt(spatial)})")
    if any(p < 0 for p in spatial):
        raise ImageReadError(f"{path}: negative voxel spacing in the NIfTI header (pixdim {fmt(spatial)}); ITK reads "
                             "it as a flipped axis, so the geometry is ambiguous")
    if h["qform_code"] > 0 and not all(math.isfinite(v) for v in h["quatern"]):
        raise ImageReadError(f"{path}: non-finite qform in the NIfTI header (quatern_b/c/d, qoffset_x/y/z "
                             f"{fmt(h['quatern'])})")
    if h["sform_code"] > 0 and not all(math.isfinite(v) for v in h["srow"]):
        raise ImageReadError(f"{path}: non-finite sform in the NIfTI header (srow_x/y/z {fmt(h['srow'])})")
    if not 1 <= ndim <= 7 or any(int(d) < 0 for d in h["dim"][1: 1 + ndim]) or h["bitpix"] <= 0:
        raise ImageReadError(f"{path}: malformed NIfTI header (dim {tuple(h['dim'])}, bitpix {h['bitpix']})")
    voxels = math.prod(int(d) for d in h["dim"][1: 1 + ndim])
    expected = int(h["vox_offset"]) + voxels * int(h["bitpix"]) // 8
    if compressed:
        held = _stream_size(path, 0, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip")
    else:
        held = path.stat().st_size
    if held < expected:
        raise ImageReadError(f"{path}: truncated NIfTI file: its header declares {expected} bytes of header and voxel "
                             f"data, the {'decompressed ' if compressed else ''}file holds {held}")


# ------------------------------------------------------------------------------------------------ NRRD
_NRRD_VECTOR = re.compile(r"\(([^)]*)\)|none", re.IGNORECASE)


def _text_header(path: Path, end: Callable[[bytes], bool], limit: int = 1 << 16) -> tuple[list[str], int]:
    """(header lines, byte offset of the data) of a text header whose last line satisfies ``end``."""
    lines, offset = [], 0
    try:
        with open(path, "rb") as f:
            while offset < limit:
                raw = f.readline()
                if not raw:
                    break
                offset += len(raw)
                lines.append(raw.decode("latin-1").rstrip("\r\n"))
                if end(raw):
                    break
    except OSError as e:
        raise ImageReadError(f"{path}: unreadable image file ({error_summary(e)})") from None
    return lines, offset


def _numbers(text: str, path: Path, field: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ImageReadError(f"{path}: header field '{field}' is not a list of numbers ({text.strip()!r})") from None


def _check_nrrd(path: Path) -> None:
    lines, data_offset = _text_header(path, lambda raw: raw.strip() == b"")
    if not lines or not lines[0].startswith("NRRD"):
        return  # not NRRD after all: ITK says why
    fields = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key.strip().lower()] = value.lstrip("=").strip()
    for key in ("space directions",):
        if key in fields:
            axes: list[list[float]] = []
            for vector in _NRRD_VECTOR.finditer(fields[key]):
                if vector.group(1) is None:
                    continue  # "none": a non-spatial axis
                values = _numbers(vector.group(1), path, key)
                if not all(math.isfinite(v) for v in values) or not any(values):
                    raise ImageReadError(f"{path}: header field '{key}' has a zero or non-finite axis "
                                         f"({fields[key]})")
                axes.append(values)
            if len(axes) == 3 and all(len(a) == 3 for a in axes) and abs(_det3(sum(axes, []))) < 1e-12:
                raise ImageReadError(f"{path}: header field '{key}' is degenerate (axes in one plane: "
                                     f"{fields[key]})")
    if "spacings" in fields:
        # NRRD writes "nan" for axes without spacing (a vector axis); the three spatial axes need a spacing.
        numbers = _numbers(fields["spacings"], path, "spacings")
        extra_axes = max(0, len(numbers) - 3)
        if any(v <= 0 for v in numbers) or sum(not math.isfinite(v) for v in numbers) > extra_axes:
            raise ImageReadError(f"{path}: header field 'spacings' is zero, negative or not finite "
                                 f"({fields['spacings']})")
    if "space origin" in fields:
        origin = _numbers(fields["space origin"].strip("()"), path, "space origin")
        if not all(math.isfinite(v) for v in origin):
            raise ImageReadError(f"{path}: header field 'space origin' is not finite ({fields['space origin']})")
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("gzip", "gz"):
        return  # raw data ITK checks for length itself; bzip2 ITK's NRRD reader refuses
    factory = lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)  # noqa: E731
    data = fields.get("data file", fields.get("datafile"))
    if data is None:
        _stream_size(path, data_offset, factory, "gzip")
    elif len(data.split()) == 1 and data.upper() != "LIST":
        _stream_size(path.parent / data, 0, factory, "gzip", header=path)


# ------------------------------------------------------------------------------------------------ MetaImage
def _check_metaimage(path: Path) -> None:
    lines, data_offset = _text_header(path, lambda raw: raw.split(b"=")[0].strip().lower() == b"elementdatafile")
    fields = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    if "ndims" not in fields:
        return  # not MetaImage after all: ITK says why
    checks = (("elementspacing", "ElementSpacing", True), ("elementsize", "ElementSize", True),
              ("offset", "Offset", False), ("origin", "Origin", False), ("position", "Position", False),
              ("transformmatrix", "TransformMatrix", False), ("rotation", "Rotation", False),
              ("orientation", "Orientation", False))
    for key, name, positive in checks:
        if key in fields:
            values = _numbers(fields[key], path, name)
            if not all(math.isfinite(v) for v in values) or (positive and not all(v > 0 for v in values)):
                what = "zero, negative or not finite" if positive else "not finite"
                raise ImageReadError(f"{path}: header field '{name}' is {what} ({fields[key]})")
            if len(values) == 9 and abs(_det3(values)) < 1e-6:
                raise ImageReadError(f"{path}: header field '{name}' is degenerate (determinant 0: {fields[key]})")
    if fields.get("compresseddata", "false").lower() != "true":
        return
    data = fields.get("elementdatafile", "")
    factory = lambda: zlib.decompressobj(32 + zlib.MAX_WBITS)  # noqa: E731  (zlib or gzip, as metaio accepts)
    if data.upper() == "LOCAL":
        _stream_size(path, data_offset, factory, "zlib")
    elif data and len(data.split()) == 1 and data.upper() != "LIST" and "%" not in data:
        _stream_size(path.parent / data, 0, factory, "zlib", header=path)


def _det3(m: list[float]) -> float:
    """Determinant of a 3x3 matrix given row by row (or column by column: the same)."""
    return (m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6]))


# ------------------------------------------------------------------------------------------------ streams
def _chunks(path: Path, offset: int) -> Iterable[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(_CHUNK):
            yield chunk


def _stream_size(path: Path, offset: int, factory: Callable, kind: str, header: Path | None = None) -> int:
    """Decompress the stream(s) starting at ``offset`` to their end marker and checksum; return the decompressed
    size. Output is counted, never kept (at most :data:`_OUT` bytes at a time). Concatenated members (gzip allows
    them; bgzip and pigz write them) are followed; trailing zero padding is tolerated."""
    name = f"{header}: data file {path}" if header is not None else str(path)
    total = 0
    decompressor = factory()
    try:
        for chunk in _chunks(path, offset):
            while chunk:
                total += _decompressed_size(decompressor, chunk)
                chunk = decompressor.unused_data if decompressor.eof else b""
                if chunk:
                    if not chunk.strip(b"\0"):
                        break
                    decompressor = factory()
        if not decompressor.eof:
            total += len(decompressor.flush())  # output zlib may still hold back
    except (zlib.error, OSError, EOFError, ValueError) as e:
        raise ImageReadError(f"{name}: corrupt {kind}-compressed voxel data ({error_summary(e)})") from None
    if not decompressor.eof:
        raise ImageReadError(f"{name}: truncated {kind}-compressed voxel data (the stream ends before its end "
                             "marker: an incomplete download or copy?)")
    return total


def _decompressed_size(decompressor, data: bytes) -> int:
    """Bytes ``data`` decompresses to, produced in pieces of at most :data:`_OUT`."""
    total = len(decompressor.decompress(data, _OUT))
    while decompressor.unconsumed_tail and not decompressor.eof:
        total += len(decompressor.decompress(decompressor.unconsumed_tail, _OUT))
    return total
