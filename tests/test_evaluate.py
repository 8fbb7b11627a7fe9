"""``vertebraformer evaluate`` end to end on hand-built raw-dataset-shaped and label-folder references."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import centroids, image_io, labels
from vertebraformer_nn.cli import main
from vertebraformer_nn.evaluation.evaluate import EvaluationError, evaluate

L1, L2, L3 = 20, 21, 22
SPACING = (1.5, 1.5, 2.0)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
# Head at the top of the z axis (RAS: z points superior): L1 highest.
Z_SLICES = {L3: slice(2, 14), L2: slice(17, 29), L1: slice(32, 44)}
SHAPE = (48, 16, 16)  # (z, y, x)
LESION_A = (slice(35, 38), slice(5, 8), slice(5, 8))  # inside L1, 27 voxels
LESION_B = (slice(19, 24), slice(4, 9), slice(4, 9))  # inside L2, 125 voxels


def _image(arr, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing)
    image.SetOrigin((30.0, 20.0, -50.0))
    image.SetDirection(RAS)
    return image


def _vertebrae(swap_l2_l3=False) -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    for code, z in Z_SLICES.items():
        if swap_l2_l3 and code in (L2, L3):
            code = L3 if code == L2 else L2
        arr[z, 3:13, 3:13] = code
    return arr


def _box_centres(image) -> dict:
    return {code: list(image.TransformContinuousIndexToPhysicalPoint((7.5, 7.5, (z.start + z.stop - 1) / 2)))
            for code, z in Z_SLICES.items()}


def _lesion_map(*boxes) -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    for box in boxes:
        arr[box] = 1
    return arr


def _write(arr, path, spacing=SPACING):
    image_io.write_image(_image(arr, spacing), path)


@pytest.fixture
def raw_dataset(tmp_path):
    """verse_a (lesions A and B annotated, centroids annotated), dicom_b (no lesion annotation, no centroids),
    dicom_c (lesion A annotated); splits: fold 1 holds dicom out."""
    root = tmp_path / "Dataset999_Tiny"
    info = {}
    for case, domain, lesions in (("verse_a", "verse", (LESION_A, LESION_B)), ("dicom_b", "dicom", None),
                                  ("dicom_c", "dicom", (LESION_A,))):
        _write(labels.verse_to_training(_vertebrae()), root / "labelsTr" / f"{case}.nii.gz")
        if lesions:
            _write(_lesion_map(*lesions), root / "lesionsTr" / f"{case}.nii.gz")
        ctd = _box_centres(_image(_vertebrae())) if domain == "verse" else {}
        info[case] = {"domain": domain, "subject": f"{domain}:{case[-1]}",
                      "annotations": {"vertebra_mask": True, "lesion_mask": bool(lesions),
                                      "centroids": "annotated" if ctd else False},
                      "centroids_mm": {str(c): p for c, p in ctd.items()}}
    (root / "dataset.json").write_text(json.dumps({
        "labels": labels.dataset_json_labels(), "file_ending": ".nii.gz", "numTraining": 3,
        "verse_codes": labels.dataset_json_verse_codes(), "case_info": info}))
    (root / "splits_final.json").write_text(json.dumps([
        {"train": ["dicom_b", "dicom_c"], "val": ["verse_a"]},
        {"train": ["verse_a"], "val": ["dicom_b", "dicom_c"], "held_out_domain": "dicom"}]))
    return root


@pytest.fixture
def predictions(tmp_path):
    """verse_a perfect, with one false lesion (score 0.8) and lesion B only partly found (IoU 0.2, score 0.7), and
    a faint candidate (0.3, not written) on the whole of lesion B; dicom_b with L2 and L3 swapped and no centroid
    file (no candidate map either); dicom_c missing."""
    out = tmp_path / "pred"
    out.mkdir()
    image = _image(_vertebrae())
    _write(_vertebrae(), out / "verse_a.nii.gz")
    centroids.write_verse_ctd(out / "verse_a_ctd.json", _box_centres(image), image)
    lesions = np.zeros(SHAPE, np.int32)
    lesions[LESION_A] = 1
    lesions[5:7, 5:7, 5:7] = 2
    lesions[19:24, 4:9, 4] = 3  # 25 of lesion B's 125 voxels: IoU 0.2
    _write(lesions, out / "verse_a_lesion.nii.gz")
    lesions[LESION_B] = np.where(lesions[LESION_B] == 3, 3, 4)
    _write(lesions, out / "verse_a_lesion_candidates.nii.gz")
    written = [{"id": 1, "score": 0.9}, {"id": 2, "score": 0.8}, {"id": 3, "score": 0.7}, {"id": 9, "score": 0.1}]
    (out / "verse_a.json").write_text(json.dumps({"lesions": written,
                                                  "lesion_candidates": written[:3] + [{"id": 4, "score": 0.3}]}))
    _write(_vertebrae(swap_l2_l3=True), out / "dicom_b.nii.gz")
    _write(np.zeros(SHAPE, np.uint8), out / "dicom_b_lesion.nii.gz")
    return out


def _run(capsys, *args):
    status = main(["evaluate", *map(str, args), "--bootstrap", "1000", "--quiet"])
    return status, capsys.readouterr()


def test_evaluate_command_on_a_raw_dataset(raw_dataset, predictions, tmp_path, capsys):
    status, out = _run(capsys, "-ref", raw_dataset, "-pred", predictions, "-o", tmp_path / "r.json",
                       "--held-out-domain", "dicom")
    assert status == 1  # dicom_c has no prediction
    assert "dicom_c: missing" in out.err
    report = json.loads((tmp_path / "r.json").read_text())
    cases = report["cases"]
    assert [f["case"] for f in report["failures"]] == ["dicom_c"]
    assert "no prediction" in report["failures"][0]["problems"][0]

    a, b, c = cases["verse_a"], cases["dicom_b"], cases["dicom_c"]
    assert a["segmentation"]["dice"] == 1.0 and a["numbering"]["id_rate"] == 1.0
    assert a["notes"] == ["scored lesion ids absent from the lesion map (ignored): [9]"]
    assert a["numbering"]["mean_distance_mm"] == pytest.approx(0.0, abs=1e-6)
    assert "case_info" in a["numbering"]["reference_centroids"]
    assert b["segmentation"]["dice"] == pytest.approx(1 / 3)
    assert b["segmentation"]["per_vertebra"]["L2"]["hd95_mm"] == pytest.approx(30.0)  # 15 slices of 2 mm
    assert b["numbering"]["hits"] == 1 and b["numbering"]["all_correct"] is False
    assert "reference mask" in b["numbering"]["reference_centroids"]
    assert "predicted mask" in b["numbering"]["predicted_centroids"]
    assert b["lesions"] is None  # not lesion-annotated: left out, not counted as lesion-free
    assert c["status"] == "missing" and c["segmentation"]["dice"] == 0.0 and c["numbering"]["id_rate"] == 0.0
    assert c["lesions"]["thresholds"]["0.1"]["fn"] == 1

    overall = report["summary"]["overall"]
    assert overall["n_cases"] == 3 and overall["n_patients"] == 3
    seg, num = overall["segmentation"], overall["numbering"]
    assert seg["dice"]["value"] == pytest.approx(4 / 9)
    assert seg["dice"]["ci"][0] <= seg["dice"]["value"] <= seg["dice"]["ci"][1]
    assert seg["binary_dice"]["value"] == pytest.approx(2 / 3)
    assert seg["hd95_mm"]["value"] == pytest.approx(10.0) and seg["hd95_mm"]["n_undefined"] == 1
    assert num["id_rate"]["value"] == pytest.approx(4 / 9) and num["id_rate_pooled"]["value"] == pytest.approx(4 / 9)
    assert num["all_correct"]["value"] == pytest.approx(1 / 3)
    assert num["localisation_mm"]["value"] == pytest.approx(10.0, abs=0.01)
    les = overall["lesions"]
    assert (les["n_cases"], les["n_reference"], les["n_predicted"], les["n_candidates"]) == (2, 3, 3, 4)
    assert les["0.1"]["precision"]["value"] == pytest.approx(2 / 3)
    assert les["0.1"]["recall"]["value"] == pytest.approx(2 / 3)
    # the AP ranks the candidates: at IoU 0.1 the faint one finds lesion B taken (FP, last): as the written ones
    assert les["0.1"]["ap"]["value"] == pytest.approx((1 + 2 / 3) / 3)
    # at IoU 0.3 it is the only match of lesion B: TP FP FP TP -> (1 + 2/4) / 3, beyond the written lesions' 1/3
    assert les["0.3"]["ap"]["value"] == pytest.approx((1 + 1 / 2) / 3) and les["0.3"]["recall"]["value"] == \
        pytest.approx(1 / 3)
    assert les["0.3"]["candidate_recall"]["value"] == pytest.approx(2 / 3) and les["ap_ranking"] == ["candidates",
                                                                                                   "lesions"]
    assert a["lesions"]["ranking"] == "candidates" and c["lesions"]["ranking"] == "lesions"

    summary = report["summary"]
    assert summary["domain:verse"]["n_cases"] == 1 and summary["domain:dicom"]["n_cases"] == 2
    assert summary["in_domain"]["n_cases"] == 1 and summary["cross_domain"]["n_cases"] == 2
    assert summary["domain:verse"]["segmentation"]["dice"]["method"] == "degenerate"
    assert report["settings"]["held_out_domain"] == "dicom" and report["settings"]["bootstrap"]["n_resamples"] == 1000

    md = (tmp_path / "r.md").read_text()
    for text in ("## Segmentation", "## Numbering", "## Lesions", "| verse | 1 |", "| dicom | 2 |",
                 "| in-domain | 1 |", "| cross-domain | 2 |", "| **overall** | 3 | 44.4 [", "`dicom_c` (missing)",
                 "| **overall** | 2 | 3 / 3 / 4 | 0.1 | 66.7 [", "## Definitions"):
        assert text in md, text
    assert "| **overall** | 3 |" in out.out  # the summary is printed too


def test_skip_missing_and_cases_from_a_leave_one_domain_out_fold(raw_dataset, predictions, tmp_path, capsys):
    status, _ = _run(capsys, "-ref", raw_dataset, "-pred", predictions, "-o", tmp_path / "s.json", "--skip-missing")
    report = json.loads((tmp_path / "s.json").read_text())
    assert status == 1 and report["summary"]["overall"]["n_cases"] == 2  # still listed, not scored
    assert report["summary"]["overall"]["segmentation"]["dice"]["value"] == pytest.approx(2 / 3)

    status, _ = _run(capsys, "-ref", raw_dataset, "-pred", predictions, "-o", tmp_path / "f.json",
                     "--cases-from-splits", "1")
    report = json.loads((tmp_path / "f.json").read_text())
    assert sorted(report["cases"]) == ["dicom_b", "dicom_c"]
    assert report["settings"]["held_out_domain"] == "dicom"
    assert report["predictions_not_evaluated"] == ["verse_a"]
    assert "in_domain" not in report["summary"] and report["summary"]["cross_domain"]["n_cases"] == 2

    status, out = _run(capsys, "-ref", raw_dataset, "-pred", predictions, "--cases-from-splits", "7")
    assert status == 2 and "no fold 7" in out.err


def test_a_complete_prediction_exits_zero(raw_dataset, predictions, tmp_path, capsys):
    shutil.copy(predictions / "verse_a.nii.gz", predictions / "dicom_c.nii.gz")
    status, out = _run(capsys, "-ref", raw_dataset, "-pred", predictions)
    assert status == 1 and "dicom_c_lesion.nii.gz: no predicted lesion map" in out.err  # dicom_c has lesions
    _write(np.zeros(SHAPE, np.uint8), predictions / "dicom_c_lesion.nii.gz")
    status, _ = _run(capsys, "-ref", raw_dataset, "-pred", predictions)
    assert status == 0
    report = json.loads((predictions / "evaluation.json").read_text())  # default report location
    assert (predictions / "evaluation.md").is_file()
    c = report["cases"]["dicom_c"]
    assert c["status"] == "ok" and c["segmentation"]["dice"] == 1.0
    assert any("dicom_c_ctd.json missing" in n for n in c["notes"])
    assert c["lesions"]["thresholds"]["0.1"]["recall"] == 0.0 and c["lesions"]["thresholds"]["0.1"]["precision"] is None


def test_prediction_on_another_grid_is_a_named_failure(raw_dataset, predictions, tmp_path, capsys):
    _write(_vertebrae(), predictions / "dicom_b.nii.gz", spacing=(1.0, 1.0, 2.0))
    status, out = _run(capsys, "-ref", raw_dataset, "-pred", predictions, "-o", tmp_path / "g.json")
    assert status == 1
    b = json.loads((tmp_path / "g.json").read_text())["cases"]["dicom_b"]
    assert b["status"] == "failed" and b["segmentation"]["dice"] == 0.0
    assert "dicom_b.nii.gz" in b["problems"][0] and "not on the reference grid" in b["problems"][0]
    assert "spacing" in b["problems"][0]


def test_unusable_reference_is_reported_and_left_out(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    bad = _vertebrae()
    bad[0, 0, 0] = 26  # sacrum: not a vertebra-mask code
    _write(bad, ref / "bad.nii.gz")
    _write(_vertebrae(), ref / "good.nii.gz")
    for case in ("bad", "good"):
        _write(_vertebrae(), pred / f"{case}.nii.gz")
    status, out = _run(capsys, "-ref", ref, "-pred", pred, "-o", tmp_path / "b.json")
    report = json.loads((tmp_path / "b.json").read_text())
    assert status == 1 and report["cases"]["bad"]["status"] == "reference_error"
    assert "bad.nii.gz: label values [26] are not VerSe vertebra codes" in report["cases"]["bad"]["problems"][0]
    assert report["summary"]["overall"]["n_cases"] == 1
    assert report["summary"]["overall"]["segmentation"]["dice"]["value"] == 1.0


def test_nothing_to_evaluate_exits_two(raw_dataset, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, out = _run(capsys, "-ref", raw_dataset, "-pred", tmp_path / "empty")
    assert status == 2 and "no case to evaluate" in out.err
    status, out = _run(capsys, "-ref", tmp_path / "nowhere", "-pred", tmp_path / "empty")
    assert status == 2 and "does not exist" in out.err
    with pytest.raises(EvaluationError, match="neither an nnU-Net raw dataset"):
        evaluate(tmp_path / "empty", tmp_path / "empty")


def test_label_folder_reference_and_centroid_files_in_other_axis_codes(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    image = _image(_vertebrae())
    _write(_vertebrae(), ref / "case1.nii.gz")
    _write(_lesion_map(LESION_A), ref / "case1_lesion.nii.gz")
    centroids.write_verse_ctd(ref / "case1_ctd.json", _box_centres(image), image)  # RAS indices
    _write(_vertebrae(), pred / "case1.nii.gz")
    _write(_lesion_map(LESION_A), pred / "case1_lesion.nii.gz")
    centroids.write_verse_ctd(pred / "case1_ctd.json", _box_centres(image), image, codes="PIR")
    (pred / "case1.json").write_text(json.dumps({"lesions": [{"id": 1, "score": 0.5}]}))
    report = evaluate(ref, pred, n_resamples=200)
    case = report["cases"]["case1"]
    assert report["settings"]["reference_kind"] == "label_folder" and case["status"] == "ok"
    assert case["numbering"]["id_rate"] == 1.0 and case["numbering"]["mean_distance_mm"] < 0.01
    assert case["numbering"]["reference_centroids"] == "reference centroid file case1_ctd.json"
    assert case["lesions"]["thresholds"]["0.3"]["ap"] == 1.0
    assert list(report["summary"]) == ["overall"]  # no domains in a plain folder
    (pred / "case1.json").write_text("{not json")
    case = evaluate(ref, pred, n_resamples=0)["cases"]["case1"]
    assert case["status"] == "failed" and "case1.json: no readable lesions[].id/score" in case["problems"][0]
    assert case["lesions"]["thresholds"]["0.3"]["tp"] == 1  # the lesion map still counts, ranked without scores


def test_verse004_against_itself_end_to_end(real_data, tmp_path, capsys):
    folder = real_data / "verse_sub-verse004"
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for out in (ref, pred):
        out.mkdir()
        shutil.copy(folder / "sub-verse004_seg-vert_msk.nii.gz", out / "verse004.nii.gz")
    shutil.copy(folder / "sub-verse004_seg-subreg_ctd.json", ref / "verse004_ctd.json")
    status, _ = _run(capsys, "-ref", ref, "-pred", pred, "-o", tmp_path / "v.json")
    assert status == 0
    case = json.loads((tmp_path / "v.json").read_text())["cases"]["verse004"]
    assert case["segmentation"]["dice"] == 1.0 and case["segmentation"]["hd95_mm"] == 0.0
    # Official centroids against the body centroids estimated from the predicted (identical) mask.
    numbering = case["numbering"]
    assert numbering["n_reference"] == 9 and numbering["id_rate"] == 1.0 and numbering["all_correct"] is True
    assert 0.5 < numbering["mean_distance_mm"] < 2.0
