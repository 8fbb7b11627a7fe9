"""MultiSpine-Sim (vertebraformer_nn.phantoms): layouts, determinism, anatomy, HU, labels and centroids.

Most tests read the session's ``sim_root`` (tests/conftest.py: generate(tmp, cases_per_source=3, seed=0)); the
unit tests build single subjects and scans directly, forcing what chance would only sometimes give (T13, L6).
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vertebraformer_nn import labels
from vertebraformer_nn.centroids import read_verse_ctd
from vertebraformer_nn.image_io import list_dicom_series, choose_series, read_image
from vertebraformer_nn.phantoms import EXTRA_STYLES, SOURCE_STYLES, SOURCES, add_parser, generate
from vertebraformer_nn.phantoms import anatomy, pathology, shapes, thorax
from vertebraformer_nn.phantoms.orchestrate import CaseBuilder
from vertebraformer_nn.phantoms.grid import make_grid
from vertebraformer_nn.phantoms.plan import CasePlan, Plan, SubjectSpec, build_plan, rng_for
from vertebraformer_nn.phantoms.render import Placement, render
from vertebraformer_nn.phantoms.styles import SOURCE_STYLES as STYLES

T13, L6 = labels.VERSE_CODE["T13"], labels.VERSE_CODE["L6"]


# --- helpers --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(sim_root):
    return json.loads((sim_root / "ground_truth" / "index.json").read_text())


def _cases(index, source):
    cases = [c for c in index["cases"] if c["source"] == source]
    assert cases, f"no {source} cases in the index"
    return cases


def _arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _truth(sim_root, case, what="vertebrae") -> sitk.Image:
    return sitk.ReadImage(str(sim_root / case["truth"][what]))


def _source_image(sim_root, case) -> sitk.Image:
    return read_image(sim_root / case["image"])


def _border_codes(image: sitk.Image) -> set:
    """Codes on the first or last slice along the head-foot axis."""
    d = np.array(image.GetDirection()).reshape(3, 3)
    axis = 2 - int(np.argmax(np.abs(d[2, :])))
    arr = _arr(image)
    return (set(np.unique(np.take(arr, 0, axis=axis))) | set(np.unique(np.take(arr, -1, axis=axis)))) - {0}


def _same_grid(a: sitk.Image, b: sitk.Image, tol=1e-3):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


def _one_case(source="verse", fov="lumbar", transitional=None, n_lesions=0, n_fractures=0, seed=3, axcodes=None,
              p_lytic=0.6):
    """Build a single case without writing anything (forcing what the plan leaves to chance)."""
    skey = f"{source}:unit"
    spec = SubjectSpec(skey, "unit", transitional, allow_t13=True, primary_case=f"{source}/unit",
                       n_lesions=n_lesions, n_fractures=n_fractures, p_lytic=p_lytic)
    cp = CasePlan(source, "unit", skey, source, fov=fov, axcodes=axcodes)
    return CaseBuilder(Plan(seed, {skey: spec}, [cp])).build(cp)


# --- public API -------------------------------------------------------------------------------------------------


def test_public_api_and_cli_parser():
    assert SOURCES == ("verse", "ctspine1k", "spineweb", "dicom")
    assert set(SOURCE_STYLES) == set(SOURCES)
    assert len(set(EXTRA_STYLES) - set(SOURCE_STYLES)) >= 2
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    args = parser.parse_args(["phantoms", "OUT", "--cases-per-source", "2", "--seed", "5", "--extra-style", "lowdose",
                              "--extra-cases", "1", "--previews"])
    assert (args.cases_per_source, args.seed, args.extra_styles, args.extra_cases, args.previews) == (2, 5, ["lowdose"], 1, True)
    assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["phantoms", "OUT", "--extra-style", "verse"])  # a source style is not an extra style


# --- determinism --------------------------------------------------------------------------------------------------


def _digests(root: Path) -> dict:
    files = [p for p in root.rglob("*") if p.is_file() and p.name.endswith((".nii.gz", ".json", ".csv", ".txt"))]
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_byte_identical_labels_and_index(tmp_path):
    a = generate(tmp_path / "a", cases_per_source=1, seed=7, sources=("verse", "ctspine1k"), progress=False)
    b = generate(tmp_path / "b", cases_per_source=1, seed=7, sources=("verse", "ctspine1k"), progress=False)
    assert a == b
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(da) >= 7 and da == db
    c = generate(tmp_path / "c", cases_per_source=1, seed=8, sources=("verse", "ctspine1k"), progress=False)
    assert c != a
    assert _digests(tmp_path / "c") != da


def test_regenerating_into_an_old_output_removes_stale_cases_but_refuses_foreign_folders(tmp_path):
    generate(tmp_path / "sim", cases_per_source=2, seed=1, sources=("spineweb",), progress=False)
    assert (tmp_path / "sim" / "spineweb" / "case02").is_dir()
    generate(tmp_path / "sim", cases_per_source=1, seed=1, sources=("spineweb",), progress=False)
    assert not (tmp_path / "sim" / "spineweb" / "case02").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(foreign, cases_per_source=1, sources=("spineweb",), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_plan_is_independent_of_extra_styles_and_sources():
    a = build_plan(3, seed=0)
    b = build_plan(3, seed=0, extra_styles=("lowdose",), extra_cases=2)
    assert [c for c in b.cases if not c.source.startswith("extra_")] == a.cases
    case = next(c for c in a.cases if c.source == "spineweb")
    one = CaseBuilder(a).build(case)
    two = CaseBuilder(b).build(case)
    assert np.array_equal(one.rendered.vertebrae, two.rendered.vertebrae) and np.array_equal(one.ct, two.ct)


# --- layouts --------------------------------------------------------------------------------------------------------


def test_verse_layout(sim_root, index):
    root = sim_root / "verse"
    releases = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert releases and all(r.startswith("dataset-verse20") for r in releases)
    assert "dataset-verse20training" in releases and "dataset-verse20validation" in releases
    cases = _cases(index, "verse")
    split = [c for c in cases if "_split-" in c["case_id"]]
    assert len(split) == 2 and len({c["subject"] for c in split}) == 1  # one subject, two series
    dtypes = set()
    for c in cases:
        ct = root.parent / c["image"]
        assert ct.name == f"{c['case_id']}_ct.nii.gz" and ct.parent.name == f"sub-{c['subject']}"
        assert ct.parent.parent.name == "rawdata"
        deriv = ct.parent.parent.parent / "derivatives" / f"sub-{c['subject']}"
        msk, ctd = deriv / f"{c['case_id']}_seg-vert_msk.nii.gz", deriv / f"{c['case_id']}_seg-subreg_ctd.json"
        for path in (ct, msk):
            hdr = nib.load(str(path)).header
            assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 0), path
            assert not np.any(hdr["srow_x"]) and not np.any(hdr["srow_z"])
        assert nib.load(str(ct)).get_data_dtype() == np.int16
        dtypes.add(str(nib.load(str(msk)).get_data_dtype()))
        entries = json.loads(ctd.read_text())
        assert list(entries[0]) == ["direction"] and "".join(entries[0]["direction"]) == c["scan"]["orientation"]
        assert all(set(e) == {"label", "X", "Y", "Z"} for e in entries[1:])
    assert {"float64", "uint8"} <= dtypes
    assert {c["scan"]["orientation"] for c in cases} - {"LPS"}  # scanner orientations kept, not all LPS
    rows = list(csv.DictReader((root / "fracture_grades.csv").open()))
    assert rows and set(rows[0]) == {"subject", "label", "grade", "type"}
    truth_frac = {(c["subject"], f["vertebra"]): f["grade"] for c in cases for f in c["fractures"]}
    table = {(r["subject"], int(r["label"])): int(r["grade"]) for r in rows}
    for key, grade in truth_frac.items():
        if key[1] not in next(c for c in cases if c["subject"] == key[0])["partial"]:
            assert table[key] == grade


def test_ctspine1k_layout(sim_root, index):
    root = sim_root / "ctspine1k"
    blocks, current = {}, None
    for line in (root / "data_split.txt").read_text().splitlines():
        if line.endswith(":"):
            current = line[:-1]
            blocks[current] = []
        elif line.strip():
            blocks[current].append(line.strip())
    assert list(blocks) == ["trainset", "test_public", "test_private"]
    listed = [s for b in blocks.values() for s in b]
    volumes = sorted(p.relative_to(root / "volumes") for p in (root / "volumes").rglob("*.nii.gz"))
    assert sorted(listed) == sorted(v.name for v in volumes) and len(set(listed)) == len(listed)
    for v in volumes:
        label = root / "labels" / v.parent / v.name.replace(".nii.gz", "_seg.nii.gz")
        assert label.is_file(), label
        codes = set(np.unique(_arr(sitk.ReadImage(str(label))))) - {0}
        assert codes and codes <= labels.CTSPINE1K_CODES  # VerSe codes 1-25, never T13
    assert len(blocks["test_public"]) >= 1


def test_spineweb_layout(sim_root, index):
    cases = _cases(index, "spineweb")
    suffixes = set()
    centroid_only = [c for c in cases if not c["annotated"]["vertebrae"]]
    assert len(centroid_only) >= 1
    for c in cases:
        folder = sim_root / "spineweb" / c["case_id"]
        image = sim_root / c["image"]
        assert image.parent == folder and image.name.startswith(c["case_id"] + ".")
        suffix = image.name[len(c["case_id"]) + 1:]
        suffixes.add(suffix)
        if c in centroid_only:
            rows = list(csv.DictReader((folder / f"{c['case_id']}_centroids.csv").open()))
            assert [int(r["label"]) for r in rows] == [int(k) for k in c["centroids_mm"]]
            for r in rows:
                np.testing.assert_allclose([float(r[k]) for k in "xyz"], c["centroids_mm"][r["label"]], atol=0.01)
            assert not list(folder.glob("*_label*"))
        else:
            label = folder / f"{c['case_id']}_label.{suffix}"
            assert label.is_file()
            if suffix == "mhd":
                assert (folder / f"{c['case_id']}_label.zraw").is_file()
    assert len(suffixes) >= 2  # mixed formats even in a 3-case run (all three in 4 or more)


def test_dicom_layout_series_choice_and_annotations(sim_root, index):
    root = sim_root / "dicom"
    mapping = json.loads((root / "mapping.json").read_text())
    cases = _cases(index, "dicom")
    assert [m["case"] for m in mapping["cases"]] == [c["case_id"] for c in cases]
    kinds = {k for m in mapping["cases"] for k in ("vertebrae", "segmentation", "rtstruct") if k in m}
    assert kinds == {"vertebrae", "segmentation", "rtstruct"}
    localizers = extra_series = shuffled = 0
    for c, m in zip(cases, mapping["cases"]):
        study = root / m["study"]
        series = list_dicom_series(study)
        assert len(series) >= 1
        chosen = choose_series(series)
        assert Path(chosen.folder) == sim_root / c["image"]  # the documented rule picks the bone series
        extra_series += len(series) > 1
        for s in series:
            ds = pydicom.dcmread(s.files[0], stop_before_pixels=True)
            if "LOCALIZER" in ds.ImageType:
                localizers += 1
                assert s.reason_rejected
        names = sorted(p.name for p in Path(chosen.folder).glob("*.dcm"))
        order = [int(pydicom.dcmread(Path(chosen.folder) / n, stop_before_pixels=True).InstanceNumber) for n in names]
        shuffled += order != sorted(order)
        for key in ("vertebrae", "lesions", "segmentation", "rtstruct"):
            if key in m:
                assert (root / m[key]).is_file()
        if "series_uid" in m:
            assert m["series_uid"] == chosen.series_uid
        if "vertebrae" in m:
            _same_grid(sitk.ReadImage(str(root / m["vertebrae"])), read_image(study))
    assert localizers >= 1 and extra_series >= 2 and shuffled >= 1


def test_dicom_seg_and_rtstruct_carry_vertebrae_and_lesions(sim_root, index):
    from vertebraformer_nn.dicom_annotations import read_rtstruct, read_seg

    mapping = json.loads((sim_root / "dicom" / "mapping.json").read_text())
    for c, m in zip(_cases(index, "dicom"), mapping["cases"]):
        if "segmentation" not in m and "rtstruct" not in m:
            continue
        ct = read_image(sim_root / c["image"])
        read = read_seg if "segmentation" in m else read_rtstruct
        masks = read(sim_root / "dicom" / m.get("segmentation", m.get("rtstruct")), ct)
        truth = _arr(_truth(sim_root, c))
        names = {f"{labels.name(code)} vertebra" for code in c["levels"]}
        assert names <= set(masks)
        for code in c["levels"][:3]:
            got = _arr(masks[f"{labels.name(code)} vertebra"]) > 0
            ref = truth == code
            dice = 2 * (got & ref).sum() / (got.sum() + ref.sum())
            assert dice > 0.9, (c["case_id"], code, dice)
        lesion_names = [n for n in masks if n.lower().startswith("lesion")]
        assert lesion_names if c["lesions"] else not lesion_names


# --- ground truth -----------------------------------------------------------------------------------------------


def test_truth_lies_on_each_source_image_grid(sim_root, index):
    for c in index["cases"]:
        image = _source_image(sim_root, c)
        for what in ("vertebrae", "lesions"):
            _same_grid(_truth(sim_root, c, what), image)
        assert list(image.GetSize()) == c["scan"]["size"]
        truth = _arr(_truth(sim_root, c))
        assert labels.sort_anatomically(set(np.unique(truth)) - {0}) == c["levels"]
        lesion_ids = set(np.unique(_arr(_truth(sim_root, c, "lesions")))) - {0}
        assert lesion_ids == {les["id"] for les in c["lesions"]}


def test_body_centroids_fall_inside_their_vertebra(sim_root, index):
    checked = 0
    for c in index["cases"]:
        truth = _truth(sim_root, c)
        arr = _arr(truth)
        ctd = read_verse_ctd(sim_root / c["truth"]["centroids"], truth)
        assert sorted(ctd) == sorted(int(k) for k in c["centroids_mm"])
        # The file holds voxel indices to 0.01 voxel (as VerSe's do): up to 0.005 voxel of rounding, which on the
        # coarse grids that domain randomisation draws (up to about 5 mm) exceeds 0.02 mm.
        atol = max(0.02, 0.006 * max(c["scan"]["spacing"]))
        for code, point in ctd.items():
            np.testing.assert_allclose(point, c["centroids_mm"][str(code)], atol=atol)
            i, j, k = np.rint(truth.TransformPhysicalPointToContinuousIndex(point)).astype(int)
            assert arr[k, j, i] == code, (c["case"], labels.name(code))
            checked += 1
    assert checked > 50


def test_verse_centroid_files_read_back_inside_the_mask_voxel_of_their_label(sim_root, index):
    for c in _cases(index, "verse"):
        ct = sim_root / c["image"]
        deriv = ct.parent.parent.parent / "derivatives" / ct.parent.name
        mask = sitk.ReadImage(str(deriv / f"{c['case_id']}_seg-vert_msk.nii.gz"))
        arr = np.rint(_arr(mask)).astype(int)
        ctd = read_verse_ctd(deriv / f"{c['case_id']}_seg-subreg_ctd.json", mask)
        assert sorted(ctd) == sorted(set(np.unique(arr)) - {0})  # one centroid per labelled vertebra
        for code, point in ctd.items():
            i, j, k = np.rint(mask.TransformPhysicalPointToContinuousIndex(point)).astype(int)
            assert arr[k, j, i] == code, (c["case"], labels.name(code))


def test_verse_leaves_border_vertebrae_unlabelled_where_the_truth_has_them(sim_root, index):
    cut_somewhere = False
    for c in _cases(index, "verse"):
        ct = sim_root / c["image"]
        mask = sitk.ReadImage(str(ct.parent.parent.parent / "derivatives" / ct.parent.name / f"{c['case_id']}_seg-vert_msk.nii.gz"))
        truth = _truth(sim_root, c)
        codes = set(np.unique(np.rint(_arr(mask)).astype(int))) - {0}
        assert set(c["partial"]) == _border_codes(truth)
        assert codes == set(c["levels"]) - set(c["partial"])
        assert not (codes & _border_codes(mask))
        cut_somewhere |= bool(c["partial"])
    assert cut_somewhere


def test_ctspine1k_and_spineweb_label_partial_vertebrae(sim_root, index):
    partial_labelled = 0
    for c in _cases(index, "ctspine1k") + [c for c in _cases(index, "spineweb") if c["annotated"]["vertebrae"]]:
        src = sim_root / c["image"]
        name = src.name[: -len(".nii.gz")] if src.name.endswith(".nii.gz") else src.stem
        label = (src.parent.parent.parent / "labels" / src.parent.name / f"{name}_seg.nii.gz" if c["source"] == "ctspine1k"
                 else next(src.parent.glob(f"{name}_label.*[!w]")))
        arr = _arr(sitk.ReadImage(str(label)))
        assert np.array_equal(arr, _arr(_truth(sim_root, c)))
        partial_labelled += bool(_border_codes(sitk.ReadImage(str(label))))
    assert partial_labelled >= 1


def test_verse_subjects_reappear_in_ctspine1k_with_the_same_anatomy(sim_root, index):
    verse = {c["subject"]: c for c in _cases(index, "verse")}
    dups = [c for c in _cases(index, "ctspine1k") if c["duplicate_of"]]
    assert dups
    for d in dups:
        assert d["case_id"] == f"{d['subject']}_CT-iso" and (sim_root / d["image"]).parent.name == "VERSE"
        v = verse[d["subject"]]
        assert d["duplicate_of"] == v["case"]
        assert d["scan"]["spacing"] != v["scan"]["spacing"] or d["scan"]["size"] != v["scan"]["size"]
        common = [k for k in d["centroids_mm"] if k in v["centroids_mm"]]
        assert len(common) >= 2
        # A different scan places the subject elsewhere, but distances between its vertebrae are the same.
        for a, b in zip(common[:-1], common[1:]):
            dv = np.linalg.norm(np.subtract(v["centroids_mm"][a], v["centroids_mm"][b]))
            dd = np.linalg.norm(np.subtract(d["centroids_mm"][a], d["centroids_mm"][b]))
            assert abs(dv - dd) < 0.05


def test_lesions_and_fractures_are_in_every_source_annotated_only_where_the_source_does(sim_root, index):
    for source in SOURCES:
        cases = _cases(index, source)
        assert any(c["lesions"] for c in cases), source
        assert any(c["fractures"] for c in cases), source
        for c in cases:
            assert c["annotated"]["lesions"] == (source == "dicom")
            assert c["annotated"]["fracture_grades"] == (source == "verse")
    les_files = list((sim_root / "dicom").rglob("lesions.nii.gz"))
    assert les_files and any(_arr(sitk.ReadImage(str(p))).any() for p in les_files)


def test_transitional_vertebrae_in_the_run(sim_root, index):
    verse_t13 = [c for c in _cases(index, "verse") if T13 in c["levels"]]
    assert verse_t13 and all(c["transitional"] == "T13" for c in verse_t13)
    order = verse_t13[0]["levels"]
    if 19 in order and 20 in order:
        assert order.index(19) < order.index(T13) < order.index(20)
    dicom_l6 = [c for c in _cases(index, "dicom") if L6 in c["levels"]]
    assert dicom_l6 and dicom_l6[0]["transitional"] == "L6"
    assert all(T13 not in c["levels"] for c in _cases(index, "ctspine1k"))


# --- anatomy and HU ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["T13", "L6"])
def test_forced_transitional_vertebra_is_drawn_with_its_code(which):
    case = _one_case(fov="lumbar" if which == "L6" else "thoracolumbar", transitional=which, seed=11)
    code = labels.VERSE_CODE[which]
    s = case.subject
    assert s.transitional == which and code in s.levels
    names = [v.name for v in s.vertebrae]
    if which == "T13":
        assert names.index("T12") + 1 == names.index("T13") == names.index("L1") - 1
        ribs = {sol.name: sol for sol in thorax.rib_solids(s)}
        t13, t12 = ribs["rib_T13_L"], ribs["rib_T12_L"]
        assert len(t13.parts) < len(t12.parts)  # T13 carries a short rib
    else:
        assert names[-2:] == ["L5", "L6"]
        assert s.sacrum[0].centre[2] < s.vertebra(code).centre[2]  # the sacrum below L6
    assert code in case.rendered.levels
    assert (case.rendered.vertebrae == code).sum() > 200
    assert code in case.rendered.centroids


def test_no_transitional_vertebra_unless_asked():
    s = anatomy.sample_subject(rng_for(0, "x"), "x", transitional=None)
    assert T13 not in s.levels and L6 not in s.levels and len(s.levels) == 24
    with pytest.raises(ValueError):
        anatomy.sample_subject(rng_for(0, "x"), "x", transitional="T14")


def test_vertebrae_grow_from_cervical_to_lumbar_and_the_spine_curves():
    s = anatomy.sample_subject(rng_for(0, "curve"), "curve", transitional=None)
    # Body depth (front plus back radius) x width x height. The real shapes (shape_model.py) make C3-C7 about
    # equal and L5 wider but lower than L3, about as large; each level's size varies by subject, so regions are
    # compared by their means.
    vol = {v.name: (v.ra + v.back) * v.rl * v.hb for v in s.vertebrae}
    mean = lambda *names: float(np.mean([vol[n] for n in names]))
    cervical, upper = mean("C3", "C4", "C5", "C6", "C7"), mean("T1", "T2", "T3", "T4")
    lower, lumbar = mean("T9", "T10", "T11", "T12"), mean("L1", "L2", "L3", "L4")
    assert cervical < upper < lower < lumbar
    assert vol["C3"] < vol["T6"] < vol["T12"] < vol["L3"]
    assert abs(vol["L5"] / vol["L3"] - 1.0) < 0.25
    y = {v.name: v.centre[1] for v in s.vertebrae}  # y = posterior
    chord = lambda a, b, m: y[m] - 0.5 * (y[a] + y[b])
    assert chord("C2", "C7", "C5") < 0  # cervical lordosis: middle in front
    assert chord("T1", "T12", "T7") > 0  # thoracic kyphosis: middle behind
    assert chord("L1", "L5", "L3") < 0  # lumbar lordosis
    assert np.all(np.diff([v.centre[2] for v in s.vertebrae]) < 0)  # head to foot


def test_hu_of_tissues_match_real_ct():
    case = _one_case(source="dicom", fov="thoracolumbar", n_lesions=2, n_fractures=1, seed=5, p_lytic=0.5)
    ct, tissue = case.ct.astype(float), case.rendered.tissue

    def core(cls, iterations=1):
        m = tissue == cls
        return ndimage.binary_erosion(m, iterations=iterations) if iterations else m

    med = lambda cls, it=1: float(np.median(ct[core(cls, it)]))
    assert med(shapes.AIR, 2) < -900
    assert -160 < med(shapes.FAT) < -40
    assert 10 < med(shapes.MUSCLE) < 90
    assert med(shapes.LUNG) < -700
    assert 40 < med(shapes.DISC, 0) < 150
    assert 120 < med(shapes.TRABECULAR) < 400
    vert = case.rendered.vertebrae
    for code in case.rendered.levels:
        if code not in case.rendered.partial:
            assert ct[vert == code].max() > 700, labels.name(code)  # the cortical shell
    les = case.rendered.lesion_info
    assert les
    for l in les:
        values = ct[case.rendered.lesions == l["id"]]
        if l["type"] == "lytic":
            assert np.median(values) < 200
        else:
            assert np.median(values) > 600
    bodies = [v for v in case.subject.vertebrae if v.code in case.rendered.levels and v.code not in case.rendered.partial]
    frac = [v for v in bodies if v.fracture_grade]
    assert frac and frac[0].fracture_loss >= 0.2


def test_written_images_are_ct_with_the_style_orientation(sim_root, index):
    for c in index["cases"]:
        img = _source_image(sim_root, c)
        arr = _arr(img)
        assert arr.min() >= -1024 and arr.max() <= 3071
        assert np.percentile(arr, 2) < -900  # air around the body
        assert 80 < np.percentile(arr[_arr(_truth(sim_root, c)) > 0], 50) < 750  # bone: a trabecular core in a cortical shell
        assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection()) == c["scan"]["orientation"]
        allowed = {o for o, _ in STYLES[c["style"]].orientations}
        assert c["scan"]["orientation"] in allowed


def test_fracture_reduces_body_height_by_its_genant_grade():
    from vertebraformer_nn.phantoms.sdf import VertebralBody

    for grade, (lo, hi) in pathology.GENANT_LOSS.items():
        loss = 0.5 * (lo + hi)
        body = VertebralBody(ra=16, rl=21, hb=13, loss=loss, kind="wedge")
        front = float(body.top(np.array(0.0), np.array(-16.0 * 0.99)))
        back = float(body.top(np.array(0.0), np.array(16.0 * 0.7)))
        height_front = front + 13
        assert abs(height_front / 26 - (1 - loss)) < 0.05, grade
        assert back > 12  # the posterior wall keeps its height


def test_partial_definition_matches_border_slices():
    case = _one_case(fov="thoracic", seed=4)
    r = case.rendered
    axis = case.grid.head_foot_axis
    edge = set(np.unique(np.take(r.vertebrae, 0, axis=axis))) | set(np.unique(np.take(r.vertebrae, -1, axis=axis)))
    assert set(r.partial) == edge - {0} and r.partial


def test_rendering_handles_any_orientation():
    """The same subject and placement on an LPS and on a PIR grid give the same labels at the same points."""
    s = anatomy.sample_subject(rng_for(1, "orient"), "o", transitional=None)
    c = s.vertebra(21).centre
    a = make_grid(c - 60, c + 60, (2.0, 2.0, 2.0), "LPS")
    b = make_grid(c - 60, c + 60, (2.0, 2.0, 2.0), "PIR")
    ra, rb = render(s, a, Placement()), render(s, b, Placement())
    ia, ib = a.image(ra.vertebrae), b.image(rb.vertebrae)
    back = _arr(sitk.Resample(ib, ia, sitk.Transform(), sitk.sitkNearestNeighbor))
    agree = np.mean(back[_arr(ia) > 0] == _arr(ia)[_arr(ia) > 0])
    assert agree > 0.97


def test_extra_styles_write_held_out_cases(tmp_path):
    index = generate(tmp_path, cases_per_source=0, seed=2, extra_styles=("lowdose", "thickslice"), extra_cases=1,
                     progress=False)
    by = {c["source"]: c for c in index["cases"]}
    assert set(by) == {"extra_lowdose", "extra_thickslice"}
    for name, c in by.items():
        assert c["image"] == f"{name}/{c['case_id']}.nii.gz" and (tmp_path / c["image"]).is_file()
        assert c["truth"]["vertebrae"].startswith(f"ground_truth/{name}/")
    assert by["extra_thickslice"]["scan"]["spacing"][2] == 5.0
    assert by["extra_lowdose"]["scan"]["noise_sd"] > 2 * max(s.noise_sd[1] for s in SOURCE_STYLES.values())
