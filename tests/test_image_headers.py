"""Inputs are what they claim (issue 12 part 5): truncated or corrupt files and broken geometry fields are refused with
a message naming the file and the field, where ITK would read zeros, garbage or patched values without a word."""
from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn.image_io import ImageReadError
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series


def ct(size=(24, 20, 12), spacing=(0.8, 0.8, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 1500, size[::-1]).astype(np.int16))
    image.SetSpacing(spacing)
    return image


def refused(path, match) -> str:
    with pytest.raises(ImageReadError, match=match) as err:
        io.read_image(path)
    assert str(path) in str(err.value), err.value
    return str(err.value)


def data_file(path: Path) -> Path:
    """The file holding the voxel data: the file itself, or the data file beside a .mhd/.nhdr header."""
    others = [p for p in path.parent.iterdir() if p.stem.split(".")[0] == path.stem.split(".")[0] and p != path]
    return others[0] if path.suffix in (".mhd", ".nhdr") else path


# ------------------------------------------------------------------------------------------------ voxel data
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
def test_truncated_files_are_refused(tmp_path, suffix):
    """Cut to two thirds: ITK reads .nii and .nii.gz with the missing part as zeros (measured, SimpleITK 2.5.7)."""
    path = io.write_image(ct(), tmp_path / f"x{suffix}")
    data = data_file(path)
    data.write_bytes(data.read_bytes()[: data.stat().st_size * 2 // 3])
    refused(path, "truncated")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("where", [0.3, 0.95])
def test_corrupt_compressed_data_is_refused(tmp_path, suffix, where):
    """50 bytes flipped inside the compressed stream: ITK reads garbage or zeros; the checksum says otherwise."""
    path = io.write_image(ct(), tmp_path / f"x{suffix}")
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * where)
    raw[start:start + 50] = bytes(b ^ 0x5A for b in raw[start:start + 50])
    path.write_bytes(bytes(raw))
    refused(path, "corrupt .*-compressed voxel data|truncated")


def test_intact_compressed_files_read_as_before(tmp_path):
    image = ct()
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"):
        path = io.write_image(image, tmp_path / f"ok{suffix}")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(io.read_image(path)),
                                      sitk.GetArrayViewFromImage(image), err_msg=suffix)
    # gzip with two concatenated members (as bgzip and pigz write them): read, and checked to its end
    path = io.write_image(image, tmp_path / "members.nii")
    raw = path.read_bytes()
    (tmp_path / "members.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(io.read_image(tmp_path / "members.nii.gz")),
                                  sitk.GetArrayViewFromImage(image))
    (tmp_path / "members.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])[:-300])
    refused(tmp_path / "members.nii.gz", "truncated gzip-compressed voxel data")


# ------------------------------------------------------------------------------------------------ geometry fields
def _edit(path: Path, old: str, new: str) -> Path:
    raw = path.read_bytes()
    assert old.encode() in raw, old
    path.write_bytes(raw.replace(old.encode(), new.encode(), 1))
    return path


@pytest.mark.parametrize("field, value, match", [
    ("ElementSpacing", "0 0.8 2", "'ElementSpacing' is zero, negative or not finite"),
    ("ElementSpacing", "-0.8 0.8 2", "'ElementSpacing' is zero, negative or not finite"),
    ("ElementSpacing", "nan 0.8 2", "'ElementSpacing' is zero, negative or not finite"),
    ("Offset", "nan 0 0", "'Offset' is not finite"),  # ITK reads a NaN origin as 0
    ("TransformMatrix", "1 0 0 1 0 0 0 0 1", "'TransformMatrix' is degenerate"),
    ("TransformMatrix", "inf 0 0 0 1 0 0 0 1", "'TransformMatrix' is not finite"),
])
def test_metaimage_geometry_fields(tmp_path, field, value, match):
    path = tmp_path / "x.mha"
    sitk.WriteImage(ct(), str(path), False)
    line = next(li for li in path.read_bytes().decode("latin-1").splitlines() if li.startswith(field + " ="))
    refused(_edit(path, line, f"{field} = {value}"), match)


@pytest.mark.parametrize("old, new, match", [
    ("space directions: (0.80000000000000004,0,0)", "space directions: (0,0,0)", "'space directions' has a zero"),
    ("space directions: (0.80000000000000004,0,0)", "space directions: (nan,0,0)", "'space directions' has a zero"),
    ("space origin: (0,0,0)", "space origin: (nan,0,0)", "'space origin' is not finite"),
])
def test_nrrd_geometry_fields(tmp_path, old, new, match):
    path = tmp_path / "x.nrrd"
    sitk.WriteImage(ct(), str(path), False)
    refused(_edit(path, old, new), match)


def _nifti(tmp_path: Path, **fields) -> Path:
    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))
    path = tmp_path / "x.nii"
    nib.save(image, str(path))
    raw = bytearray(path.read_bytes())
    for offset, value in fields.values():
        raw[offset:offset + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(raw))
    return path


def test_nifti_geometry_fields(tmp_path):
    refused(_nifti(tmp_path, pixdim1=(80, float("inf"))), "missing or zero voxel spacing .*pixdim")
    refused(_nifti(tmp_path, pixdim1=(80, -0.8)), "negative voxel spacing .*pixdim")  # ITK: a flipped axis
    refused(_nifti(tmp_path, srow_x3=(292, float("nan"))), "non-finite sform .*srow")  # nibabel writes sform_code 2
    refused(_nifti(tmp_path, pixdim1=(80, 1e-20)), r"voxel spacing \(1e-20, 0.8, 2\) mm, outside 0.001 to 1000 mm")


# ------------------------------------------------------------------------------------------------ DICOM fields
@pytest.mark.parametrize("keyword, value, match", [
    ("PixelSpacing", ["0", "0"], "PixelSpacing of .* is zero or negative"),  # GDCM: 1 mm, silently
    ("PixelSpacing", ["-0.8", "0.8"], "PixelSpacing of .* is zero or negative"),  # GDCM: a flipped axis
    ("PixelSpacing", ["nan", "0.8"], "PixelSpacing of .* is not 2 finite numbers"),  # GDCM: 4.7e-310 mm
    ("ImagePositionPatient", ["nan", "0", "0"], "ImagePositionPatient of .* is not 3 finite numbers"),
    ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], "not two orthogonal unit vectors"),
])
def test_dicom_geometry_fields(tmp_path, keyword, value, match):
    files = write_dicom_series(ct(), tmp_path / "series")
    for f in files:
        ds = pydicom.dcmread(str(f))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns that "nan" is no valid decimal string: that is the test
            setattr(ds, keyword, value)
        ds.save_as(str(f))
    message = refused(tmp_path / "series", match)
    assert "no usable CT series" in message
