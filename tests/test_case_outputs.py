"""Per-case outputs of ``vertebraformer predict``: label/lesion maps, centroid file, report, preview, colour table
and summary.csv (inference/case_outputs.py, preview.py, summary.py)."""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import atomic, labels
from vertebraformer_nn.centroids import axcodes, read_verse_ctd
from vertebraformer_nn.image_io import read_label
from vertebraformer_nn.inference import case_outputs
from vertebraformer_nn.inference.case_outputs import case_files, write_case_outputs
from vertebraformer_nn.inference.postprocessing import resolve
from vertebraformer_nn.inference.preview import COLOUR_TABLE_NAME, write_colour_table, write_preview
from vertebraformer_nn.inference.summary import (COLUMNS, SummaryWriter, read_summary, row_from_report,
                                                 summary_path)

SPACING = (0.8, 0.9, 1.5)  # L, P, S of the LPS-built case
ORIGIN = (12.0, -40.0, 300.0)
HU = {19: 200, 20: 250, 21: 300}  # a constant HU per vertebra
BOX_VOXELS = 8 * 16 * 14  # every vertebra block
LESION_A = (slice(12, 16), slice(10, 14), slice(8, 12))  # inside L1, 64 voxels, p = 0.9
LESION_B = (slice(2, 6), slice(3, 6), slice(3, 6))  # outside every vertebra, 36 voxels, p = 0.6
FAINT = (slice(3, 7), slice(16, 20), slice(14, 18))  # inside L2, 64 voxels, p = 0.2: a candidate, not a lesion
#: the blocks above are 39-69 mm3, under the default smallest lesion: this case keeps what is above 30 mm3
#: and its CT holds no lesion: the head's map alone is written here (the CT's judgement: test_lesion_contrast.py)
SMALL_LESIONS = resolve(overrides={"lesion_min_volume_mm3": 30.0, "lesion_ct_contrast": 0.0,
                                   "lesion_ct_band_mm": 0.0})


def _lps_case():
    """(ct, vertebra image, lesion probability image) built in LPS: T12 on top of L1 on top of L2 (S increases
    with z)."""
    shape = (30, 28, 26)  # (S, P, L) = SimpleITK array order of an LPS image
    vert = np.zeros(shape, np.uint8)
    for n, code in enumerate((21, 20, 19)):  # foot to head
        vert[2 + 9 * n:10 + 9 * n, 6:22, 6:20] = code
    ct = np.full(shape, -100, np.int16)
    for code, hu in HU.items():
        ct[vert == code] = hu
    prob = np.zeros(shape, np.float32)
    prob[LESION_A] = 0.9
    prob[LESION_B] = 0.6
    prob[FAINT] = 0.2
    prob[0, 0, 0] = 0.99  # one voxel: below the minimum lesion volume
    images = []
    for arr in (ct, vert, prob):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(SPACING)
        img.SetOrigin(ORIGIN)
        images.append(img)
    return images


def _case(orientation: str):
    """The LPS case reoriented (axes permuted and flipped, no resampling): (ct image, vertebrae array, lesion array)."""
    ct, vert, prob = (sitk.DICOMOrient(img, orientation) for img in _lps_case())
    return ct, sitk.GetArrayFromImage(vert), sitk.GetArrayFromImage(prob)


def _world(index_kji):
    """LPS mm of a continuous index (z, y, x) of the LPS-built case."""
    return np.array(ORIGIN) + np.array(index_kji[::-1]) * np.array(SPACING)


ORIENTATIONS = ["LPS", "RAS", "PIR", "ILA"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The case written once per orientation: {orientation: (out_dir, ct, vertebrae, report)}."""
    out = {}
    for orientation in ORIENTATIONS:
        folder = tmp_path_factory.mktemp(orientation)
        ct, vert, prob = _case(orientation)
        numbering = {"20": {"confidence": 0.8}, 21: 0.6, "notes": ["T13 suspected"]}
        report = write_case_outputs(folder, "case1", ct, vert, prob, numbering, source="/in/case1.nii.gz",
                                    postprocessing=SMALL_LESIONS)
        out[orientation] = (folder, ct, vert, report)
    return out


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_written_maps_share_the_ct_geometry_exactly(written, orientation):
    folder, ct, vert, report = written[orientation]
    files = case_files(folder, "case1")
    assert axcodes(ct) == orientation
    for key in ("labels", "lesions", "lesion_candidates"):
        # NIfTI stores spacing and origin as float32: "identical" is up to that precision.
        image = sitk.ReadImage(str(files[key]))
        assert image.GetSize() == ct.GetSize()
        assert image.GetSpacing() == pytest.approx(ct.GetSpacing(), rel=1e-6)
        assert image.GetOrigin() == pytest.approx(ct.GetOrigin(), abs=1e-5)
        assert image.GetDirection() == pytest.approx(ct.GetDirection(), abs=1e-6)
    labels_image = sitk.ReadImage(str(files["labels"]))
    assert labels_image.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(labels_image), vert)
    assert report["image"]["axcodes"] == orientation and report["image"]["size"] == list(ct.GetSize())


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_report_content_is_the_same_in_world_terms_whatever_the_orientation(written, orientation):
    folder, ct, _, report = written[orientation]
    on_disk = json.loads(case_files(folder, "case1")["report"].read_text())
    assert on_disk == report
    voxel_ml = np.prod(SPACING) / 1000
    assert [(v["code"], v["name"]) for v in report["vertebrae"]] == [(19, "T12"), (20, "L1"), (21, "L2")]
    for v in report["vertebrae"]:
        assert v["volume_ml"] == pytest.approx(BOX_VOXELS * voxel_ml, abs=1e-3)
        assert v["mean_hu"] == HU[v["code"]]
    assert [v["confidence"] for v in report["vertebrae"]] == [None, 0.8, 0.6]
    # A box's body centroid is its centre: L1 spans z 11..18, y 6..21, x 6..19 of the LPS case.
    l1 = report["vertebrae"][1]
    assert l1["centroid_mm"] == pytest.approx(_world([14.5, 13.5, 12.5]), abs=0.6)
    assert report["field_of_view"] == {"first": "T12", "last": "L2"}
    assert report["notes"][0] == "T13 suspected" and "field of view: T12 to L2" in report["notes"][1]
    assert report["source"] == "/in/case1.nii.gz"

    a, b = report["lesions"]  # by descending score; the one-voxel component is dropped
    assert (a["id"], a["level"], a["level_code"], a["score"]) == (1, "L1", 20, pytest.approx(0.9))
    assert (b["id"], b["level"], b["level_code"], b["score"]) == (2, None, 0, pytest.approx(0.6))
    assert a["volume_ml"] == pytest.approx(64 * voxel_ml, abs=1e-4)
    assert b["volume_ml"] == pytest.approx(36 * voxel_ml, abs=1e-4)
    assert a["centre_mm"] == pytest.approx(_world([13.5, 11.5, 9.5]), abs=0.01)
    # Bounding box: the outer voxel edges of z 12..15, y 10..13, x 8..11.
    assert a["bbox_mm"]["min"] == pytest.approx(_world([11.5, 9.5, 7.5]), abs=0.01)
    assert a["bbox_mm"]["max"] == pytest.approx(_world([15.5, 13.5, 11.5]), abs=0.01)
    # the vertebra of each: A wholly in L1; B outside every vertebra, beside L2 (columns 3-5 against 6)
    assert a["levels"] == [{"code": 20, "name": "L1", "fraction": 1.0}] and a["nearest_vertebra"] is None
    assert b["levels"] == [] and b["nearest_vertebra"]["name"] == "L2"
    assert b["nearest_vertebra"]["distance_mm"] == pytest.approx(float(np.hypot(0.8, 0.9)), abs=0.01)
    # every candidate is listed: the two lesions (same ids, flagged), then the faint one in L2
    assert report["lesion_candidates"][:2] == report["lesions"] and all(r["lesion"] for r in report["lesions"])
    faint = report["lesion_candidates"][2]
    assert (faint["id"], faint["lesion"], faint["level"], faint["score"]) == (3, False, "L2", pytest.approx(0.2))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_lesion_ids_in_the_image_match_the_report(written, orientation):
    folder, ct, _, report = written[orientation]
    lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(case_files(folder, "case1")["lesions"])))
    assert sorted(np.unique(lesions).tolist()) == [0] + [les["id"] for les in report["lesions"]]
    voxel_ml = np.prod(ct.GetSpacing()) / 1000
    for les in report["lesions"]:
        assert (lesions == les["id"]).sum() * voxel_ml == pytest.approx(les["volume_ml"], abs=1e-4)
    candidates = sitk.GetArrayFromImage(sitk.ReadImage(str(case_files(folder, "case1")["lesion_candidates"])))
    assert sorted(np.unique(candidates).tolist()) == [0] + [c["id"] for c in report["lesion_candidates"]]
    assert np.array_equal(np.where(candidates <= len(report["lesions"]), candidates, 0), lesions)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_centroid_file_round_trips_to_the_report_positions(written, orientation):
    folder, ct, _, report = written[orientation]
    path = case_files(folder, "case1")["centroids"]
    entries = json.loads(path.read_text())
    assert entries[0] == {"direction": list(orientation)}
    assert [e["label"] for e in entries[1:]] == [19, 20, 21]
    back = read_verse_ctd(path, ct)
    for v in report["vertebrae"]:
        assert back[v["code"]] == pytest.approx(v["centroid_mm"], abs=0.02)


def test_centroid_file_matches_the_official_verse004_file(tmp_path, real_data):
    folder = real_data / "verse_sub-verse004"
    mask = read_label(folder / "sub-verse004_seg-vert_msk.nii.gz")
    vert = sitk.GetArrayFromImage(mask).astype(np.uint8)
    ct = sitk.GetImageFromArray(np.where(vert > 0, 400, -80).astype(np.int16))  # the CT itself is not shipped
    ct.CopyInformation(mask)
    report = write_case_outputs(tmp_path, "verse004", ct, vert, None, None, preview=False)
    ours = read_verse_ctd(tmp_path / "verse004_ctd.json", ct)
    official = read_verse_ctd(folder / "sub-verse004_seg-subreg_ctd.json", ct)
    assert json.loads((tmp_path / "verse004_ctd.json").read_text())[0] == {"direction": ["P", "I", "R"]}
    assert sorted(ours) == sorted(official) == list(range(16, 25))
    errors = [float(np.linalg.norm(ours[c] - official[c])) for c in official]
    assert max(errors) < 2.0, errors
    assert [v["name"] for v in report["vertebrae"]] == ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert all(v["mean_hu"] == 400 for v in report["vertebrae"])
    # A CT read from NIfTI keeps its grid to the bit (an oblique direction to ITK's quaternion round-off).
    written = sitk.ReadImage(str(tmp_path / "verse004.nii.gz"))
    assert written.GetSpacing() == mask.GetSpacing() and written.GetOrigin() == mask.GetOrigin()
    assert written.GetDirection() == pytest.approx(mask.GetDirection(), abs=1e-8)


def test_without_lesion_head_no_lesion_map_and_stale_files_go(tmp_path):
    ct, vert, prob = _case("RAS")
    write_case_outputs(tmp_path, "c", ct, vert, prob, None, preview=True)
    report = write_case_outputs(tmp_path, "c", ct, vert, None, None, preview=False)
    files = case_files(tmp_path, "c")
    assert report["lesions"] == [] and any("no lesion head" in n for n in report["notes"])
    assert not files["lesions"].exists() and not files["lesion_candidates"].exists() and not files["preview"].exists()
    assert set(report["files"]) == {"labels", "centroids"}


def test_the_report_is_written_last_and_a_failed_rewrite_leaves_none(tmp_path, monkeypatch):
    ct, vert, prob = _case("LPS")
    write_case_outputs(tmp_path, "c", ct, vert, prob, None, preview=False)
    report_path = case_files(tmp_path, "c")["report"]
    assert report_path.exists()

    def broken_preview(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(case_outputs, "write_preview", broken_preview)
    with pytest.raises(RuntimeError, match="disk full"):
        write_case_outputs(tmp_path, "c", ct, vert, prob, None, preview=True)
    assert not report_path.exists()  # --continue will run the case again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_numbering_result_object_is_accepted(tmp_path):
    class Result:  # the numbering step's NumberingResult carries instances and notes
        instances = [{"code": 19, "confidence": 0.3}, {"code": 20, "confidence": 0.99}]
        notes = ["field of view starts at T12"]

    ct, vert, _ = _case("PIR")
    report = write_case_outputs(tmp_path, "c", ct, vert, None, Result(), preview=False)
    assert [v["confidence"] for v in report["vertebrae"]] == [0.3, 0.99, None]
    assert report["notes"][0] == "field of view starts at T12"


def test_bad_vertebra_maps_are_refused_naming_the_case(tmp_path):
    ct, vert, prob = _case("LPS")
    with pytest.raises(ValueError, match="case c: vertebra map has shape"):
        write_case_outputs(tmp_path, "c", ct, vert[:-1], None, None)
    bad = vert.copy()
    bad[0, 0, 0] = 29
    with pytest.raises(ValueError, match=r"case c: .*\[29\].*not VerSe codes"):
        write_case_outputs(tmp_path, "c", ct, bad, None, None)
    with pytest.raises(ValueError, match="case c: lesion probabilities"):
        write_case_outputs(tmp_path, "c", ct, vert, prob[:-1], None)
    assert not list(tmp_path.iterdir())


def _png(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def test_preview_is_a_sane_png_and_the_same_whatever_the_orientation(written):
    pictures = {o: _png(case_files(written[o][0], "case1")["preview"]) for o in ORIENTATIONS}
    height, width = pictures["LPS"].shape[:2]
    assert 500 <= height <= 1000 and 300 <= width <= 3000
    for orientation in ORIENTATIONS[1:]:
        assert np.array_equal(pictures[orientation], pictures["LPS"]), orientation
    # Red lesion outlines and coloured labels are drawn, not just a grey CT.
    rgb = pictures["LPS"][..., :3]
    assert ((rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.2) & (rgb[..., 2] < 0.2)).any()
    assert (np.ptp(rgb, axis=-1) > 0.1).mean() > 0.1


def test_preview_of_an_empty_label_map(tmp_path):
    ct, vert, _ = _case("RAS")
    path = write_preview(tmp_path / "p.png", ct, np.zeros_like(vert), None, title="empty")
    assert _png(path).shape[0] > 300


def test_preview_works_on_planes_only_bounded_in_memory(tmp_path):
    """A 480x256x256 CT (31 M voxels): no copy of a whole volume (bytes, not seconds: no clock in the tests)."""
    import tracemalloc

    vert = np.zeros((480, 256, 256), np.uint8)
    for n, code in enumerate(labels.ANATOMICAL_ORDER_CODES[:24]):
        vert[2 + 20 * n:17 + 20 * n, 100:160, 90:170] = code
    ct = sitk.GetImageFromArray(np.where(vert > 0, 400, -100).astype(np.int16))
    ct.SetSpacing((0.7, 0.7, 1.0))
    lesions = np.zeros(vert.shape, np.int32)
    lesions[50:60, 120:130, 100:110] = 1
    write_preview(tmp_path / "warm.png", ct[:20, :20, :20], vert[:20, :20, :20])  # imports and fonts: not measured
    tracemalloc.start()
    try:
        write_preview(tmp_path / "big.png", ct, vert, lesions)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The figure itself takes about 40 MB: a copy of the CT (63 MB), or of the label map on top of the figure, fails.
    assert peak < sitk.GetArrayViewFromImage(ct).nbytes, f"{peak / 1e6:.0f} MB"
    assert _png(tmp_path / "big.png").shape[0] > 500


def test_colour_table_lists_every_verse_code_with_distinct_colours(tmp_path):
    path = write_colour_table(tmp_path)
    assert path.name == COLOUR_TABLE_NAME
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert all(len(r) == 6 for r in rows)
    table = {int(r[0]): (r[1], tuple(int(v) for v in r[2:5]), int(r[5])) for r in rows}
    assert set(table) == {0} | set(labels.VERSE_NAME)
    for code, (name, rgb, alpha) in table.items():
        assert name == ("background" if code == 0 else labels.name(code))
        assert all(0 <= v <= 255 for v in rgb) and alpha == (0 if code == 0 else 255)
    colours = [rgb for code, (_, rgb, _) in table.items() if code]
    assert len(set(colours)) == len(colours)


# --- summary.csv --------------------------------------------------------------------------------------------------

def _report(case, names, n_lesions):
    return {"case": case, "source": f"/in/{case}.nii.gz", "vertebrae": [{"name": n} for n in names],
            "lesions": [{}] * n_lesions}


def test_summary_rows_with_a_failure_and_resume(tmp_path):
    writer = SummaryWriter(tmp_path)
    writer.ok(_report("a", ["T9", "T10", "L5"], 2),
              seconds={"read": 1.0, "preprocess": 2.0, "network": 3.0, "numbering": 0.5, "export": 0.25})
    writer.failed("b", "/in/b", "unreadable image file\n(bad header)", seconds={"read": 0.1})
    with (tmp_path / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [r["case"] for r in rows] == ["a", "b"]
    a, b = rows
    assert [a[k] for k in ("status", "n_vertebrae", "first_level", "last_level", "n_lesions")] == \
        ["ok", "3", "T9", "L5", "2"]
    assert (a["source"], a["seconds_network"], a["seconds_total"]) == ("/in/a.nii.gz", "3.00", "6.75")
    assert [b[k] for k in ("status", "reason", "n_vertebrae", "seconds_total")] == \
        ["failed", "unreadable image file (bad header)", "", "0.10"]

    resumed = SummaryWriter(tmp_path, resume=True)  # --continue
    assert [r["case"] for r in resumed.failures()] == ["b"]
    resumed.ok(_report("b", ["L1"], 0), source="/in/b")
    assert [(r["case"], r["status"]) for r in read_summary(tmp_path / "summary.csv")] == [("a", "ok"), ("b", "ok")]
    assert SummaryWriter(tmp_path).rows == {}  # without resume a new run starts a new summary


def test_summary_rewrite_is_atomic(tmp_path, monkeypatch):
    writer = SummaryWriter(tmp_path)
    writer.ok(_report("a", ["L1"], 0))
    before = (tmp_path / "summary.csv").read_text()

    def crash(*args):
        raise OSError("killed")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        writer.failed("b", "/in/b", "boom")
    monkeypatch.undo()
    assert (tmp_path / "summary.csv").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_summary_part_names_and_bad_files(tmp_path):
    assert summary_path(tmp_path, 0, 4).name == "summary_part0of4.csv"
    assert summary_path(tmp_path, 0, 1).name == "summary.csv"
    with pytest.raises(ValueError, match="part_id"):
        summary_path(tmp_path, 4, 4)
    SummaryWriter(tmp_path, part_id=2, num_parts=3).failed("x", "", "no CT")
    assert read_summary(tmp_path / "summary_part2of3.csv")[0]["reason"] == "no CT"
    (tmp_path / "summary.csv").write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match="summary.csv: not a VertebraFormer summary"):
        SummaryWriter(tmp_path, resume=True)


def test_summary_row_from_a_written_report(written):
    row = row_from_report(written["RAS"][3], seconds={"export": 1.5})
    assert [row[k] for k in ("case", "source", "n_vertebrae", "first_level", "last_level", "n_lesions")] == \
        ["case1", "/in/case1.nii.gz", "3", "T12", "L2", "2"]
    assert (row["seconds_export"], row["seconds_read"], row["seconds_total"]) == ("1.50", "", "1.50")


def test_centroids_come_from_the_labels_given_for_them(tmp_path):
    """Export writes the labels on the bone edge but estimates the body centroids on the network's labels
    (``centroid_labels``): a vertebra whose written mask gained a bright rim keeps its centroid; a code absent
    from the written map gets none."""
    ct, vert_img, _ = _lps_case()
    vert = sitk.GetArrayFromImage(vert_img)
    written = vert.copy()
    written[2:10, 6:22, 20:26] = 21  # L2 grown sideways: its written mask's centroid moves
    written[written == 19] = 0  # T12 gone from the written map
    plain = write_case_outputs(tmp_path / "a", "c", ct, vert, None, None, preview=False)
    given = write_case_outputs(tmp_path / "b", "c", ct, written, None, None, preview=False, centroid_labels=vert,
                               source="/in/c.nii.gz")
    alone = write_case_outputs(tmp_path / "c", "c", ct, written, None, None, preview=False)
    centroid = {r["name"]: r["centroid_mm"] for r in plain["vertebrae"]}
    assert {r["name"]: r["centroid_mm"] for r in given["vertebrae"]} == {n: centroid[n] for n in ("L1", "L2")}
    assert {r["name"]: r["centroid_mm"] for r in alone["vertebrae"]}["L2"] != centroid["L2"]
    assert sorted(read_verse_ctd(tmp_path / "b" / "c_ctd.json", ct)) == [20, 21]
    assert given["source"] == "/in/c.nii.gz"
