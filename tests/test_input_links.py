"""DICOM series and image files reached through symbolic links are read (issue 12 part 5); a link back up the tree
does not loop; a DICOM folder given through a link keeps the name it was given."""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from vertebraformer_nn import image_io as io
from vertebraformer_nn.inference.cases import discover_cases, read_case
from vertebraformer_nn.phantoms.dicom_writer import write_dicom_series

REAL_SERIES = "totalsegmentator/example_ct_dicom"


def test_dicom_folders_and_files_through_links(tmp_path, real_data):
    store = tmp_path / "store"
    write_dicom_series(sitk.GetImageFromArray(np.full((9, 8, 8), 40, np.int16)), store / "nested" / "ct",
                       patient_id="P1")
    scans = tmp_path / "scans"
    scans.mkdir()
    os.symlink(real_data / REAL_SERIES, scans / "siemens")  # a folder link to a series
    os.symlink(store, scans / "linked_store")  # a link to a tree holding a series two levels down
    os.symlink(scans, scans / "linked_store_loop")  # a link back up: must not loop
    files = scans / "file_links"
    files.mkdir()
    for f in (real_data / REAL_SERIES).iterdir():  # a folder of links to the slice files
        os.symlink(f, files / f.name)

    found = discover_cases(scans)
    names = {c.name: (c.kind, c.source.relative_to(scans).as_posix()) for c in found.cases}
    assert names == {"siemens": ("dicom", "siemens"), "linked_store_nested_ct": ("dicom", "linked_store/nested/ct"),
                     "file_links": ("dicom", "file_links")}
    images = {case.name: read_case(case) for case in found.cases}
    assert images["linked_store_nested_ct"].GetSize() == (8, 8, 9)
    assert images["siemens"].GetSize() == (512, 512, 20)
    assert io.grid_mismatch(images["siemens"], images["file_links"]) is None
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(images["siemens"]),
                                  sitk.GetArrayViewFromImage(images["file_links"]))
    assert {s.folder.relative_to(scans).as_posix() for s in io.list_dicom_series(scans)} == set(
        c.source.relative_to(scans).as_posix() for c in found.cases)

    # The input itself a link to a DICOM folder: the case is named as given, not after the link's target.
    os.symlink(real_data / REAL_SERIES, tmp_path / "patient_a")
    (case,) = discover_cases(tmp_path / "patient_a").cases
    assert (case.name, case.kind) == ("patient_a", "dicom")
    (series,) = io.list_dicom_series(case.source)
    assert series.reason_rejected is None and series.n_slices == 20
