"""Which cases MultiSpine-Sim writes: per source, the case ids, subjects, fields of view and the special roles
the converters must meet (a VerSe subject with two series, VerSe subjects re-used by CTSpine1K, a centroid-only
SpineWeb case, DICOM studies with extra series, forced T13 / L6 subjects, lesions and fractures in every source).

Everything is decided from (seed, cases per source) alone, and each random draw uses a generator keyed by what
it is for (``rng_for``), so adding an extra style or leaving a source out never changes another case.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..sources import SOURCES  # noqa: F401  (the phantoms' modules take it from here)

# CTSpine1K's collections, the kind of scan each holds, and how the release names its files.
CTSPINE1K_COLLECTIONS = (
    ("COLONOG", "abdomen", lambda k: f"1.3.6.1.4.1.9328.50.4.{k:04d}"),
    ("MSD-T03", "thoracolumbar", lambda k: f"liver_{k}"),
    ("HNSCC-3DCT-RT", "cervical", lambda k: f"HN_P{k:03d}"),
    ("COVID-19", "thoracic", lambda k: f"volume-covid19-A-{k:04d}_ct"),
)


def rng_for(seed: int, *keys) -> np.random.Generator:
    """A generator for one purpose: the same (seed, keys) always gives the same stream."""
    return np.random.default_rng([int(seed), *(zlib.crc32(str(k).encode()) for k in keys)])


@dataclass(frozen=True)
class SubjectSpec:
    key: str  # unique across sources
    subject_id: str  # the "subject" field of the index
    transitional: Optional[str]  # "random", None, "T13", "L6"
    allow_t13: bool
    primary_case: str  # case key whose field of view places the pathology
    n_lesions: int
    n_fractures: int
    p_lytic: float = 0.6


@dataclass(frozen=True)
class CasePlan:
    source: str  # "verse", ..., or "extra_<style>"
    case_id: str
    subject_key: str
    style: str
    fov: Optional[str] = None  # forced field-of-view kind
    axcodes: Optional[str] = None  # forced orientation
    iso_mm: Optional[float] = None  # forced isotropic spacing
    avoid_fov: Tuple[str, ...] = ()  # kinds not to draw (a fracture subject's first scan must show T4 or below)
    extra: Dict = field(default_factory=dict)  # source-specific roles
    randomise: float = 0.0  # domain randomisation strength (randomise.py); held-out styles are never randomised

    @property
    def key(self) -> str:
        return f"{self.source}/{self.case_id}"


@dataclass
class Plan:
    seed: int
    subjects: Dict[str, SubjectSpec]
    cases: List[CasePlan]

    def of_source(self, source: str) -> List[CasePlan]:
        return [c for c in self.cases if c.source == source]


def _pathology(rng: np.random.Generator, i: int, mets: bool = False) -> Tuple[int, int]:
    """(lesions, fractures) for the i-th subject of a source: every other one has lesions, every third from the
    second has a fracture, so any source with two cases or more shows both in its images."""
    if mets:
        n_les = int(rng.integers(1, 5))  # a metastasis cohort: every patient has some
    else:
        n_les = int(rng.integers(1, 4)) if i % 2 == 0 else int(rng.random() < 0.25)
    n_frac = int(rng.integers(1, 3)) if i % 3 == 1 else int(rng.random() < 0.15)
    return n_les, n_frac


def build_plan(cases_per_source: int = 6, seed: int = 0, extra_styles: Sequence[str] = (), extra_cases: int = 4,
               randomise: float = 0.0) -> Plan:
    """The cases of a run; the sources' cases get domain randomisation of strength ``randomise``."""
    n = int(cases_per_source)
    if n < 0:
        raise ValueError("cases_per_source must be >= 0")
    if not 0.0 <= randomise <= 1.0:
        raise ValueError(f"randomise must be in [0, 1], not {randomise}")
    subjects: Dict[str, SubjectSpec] = {}
    cases: List[CasePlan] = []

    # --- VerSe: subject 0 has two series (split entity); releases training / validation / test.
    rng = rng_for(seed, "plan", "verse")
    n_sub = n - 1 if n >= 2 else n
    n_val = 1 if n_sub >= 2 else 0
    n_test = 1 if n_sub >= 4 else 0
    n_dup = (n // 3 if n >= 3 else (1 if n == 2 else 0)) if n_sub >= 2 else 0
    verse_subjects = []
    for k in range(n_sub):
        sid = f"verse{501 + k}"
        skey = f"verse:{sid}"
        release = ("training" if k < n_sub - n_val - n_test else "validation" if k < n_sub - n_test else "test")
        is_dup = 1 <= k <= n_dup
        transitional = "T13" if (k == 0 and n >= 3) else ("random" if not is_dup else None)
        n_les, n_frac = _pathology(rng, k)
        split = k == 0 and n >= 2
        primary = f"verse/sub-{sid}_split-verse{601 + k}" if split else f"verse/sub-{sid}"
        subjects[skey] = SubjectSpec(skey, sid, transitional, allow_t13=not is_dup, primary_case=primary,
                                     n_lesions=n_les, n_fractures=n_frac)
        common = dict(release=f"dataset-verse20{release}", subject=sid,
                      mask_dtype="float64" if k % 2 == 1 else "uint8", dup=is_dup)
        if split:
            cases.append(CasePlan("verse", f"sub-{sid}_split-{sid}", skey, "verse", fov="cervicothoracic",
                                  extra={**common, "split": sid}))
            cases.append(CasePlan("verse", f"sub-{sid}_split-verse{601 + k}", skey, "verse", fov="thoracolumbar",
                                  extra={**common, "split": f"verse{601 + k}"}))
        else:
            cases.append(CasePlan("verse", f"sub-{sid}", skey, "verse", extra=common,
                                  avoid_fov=("cervical",) if n_frac else ()))
        verse_subjects.append((skey, sid, is_dup))

    # --- CTSpine1K: some VerSe subjects re-annotated (VERSE/verse<id>_CT-iso), then the other collections.
    rng = rng_for(seed, "plan", "ctspine1k")
    dups = [(skey, sid) for skey, sid, d in verse_subjects if d]
    others = n - len(dups)
    split_of = ["trainset"] * others
    if others >= 2:
        split_of[-1] = "test_public"
    if others >= 4:
        split_of[-2] = "test_private"
    for i in range(others):
        coll, kind, stem_of = CTSPINE1K_COLLECTIONS[i % len(CTSPINE1K_COLLECTIONS)]
        stem = stem_of(3 + 7 * i)
        skey = f"ctspine1k:{stem}"
        n_les, n_frac = _pathology(rng, i)
        if kind == "cervical":
            n_frac = 0  # osteoporotic fractures are thoracolumbar; a head-and-neck scan would not show one
        subjects[skey] = SubjectSpec(skey, stem, "random", allow_t13=False, primary_case=f"ctspine1k/{stem}",
                                     n_lesions=n_les, n_fractures=n_frac)
        cases.append(CasePlan("ctspine1k", stem, skey, "ctspine1k", fov=kind,
                              extra={"collection": coll, "stem": stem, "split": split_of[i]}))
    for skey, sid in dups:
        stem = f"{sid}_CT-iso"
        cases.append(CasePlan("ctspine1k", stem, skey, "ctspine1k", iso_mm=2.0,
                              extra={"collection": "VERSE", "stem": stem, "split": "trainset", "duplicate_of": f"verse_sub-{sid}"}))

    # --- SpineWeb: case folders, formats cycling, the last case centroid-only.
    rng = rng_for(seed, "plan", "spineweb")
    formats = ("mhd", "nrrd", "nii.gz")
    for i in range(n):
        cid = f"case{i + 1:02d}"
        skey = f"spineweb:{cid}"
        centroid_only = n >= 2 and i == n - 1
        n_les, n_frac = _pathology(rng, i)
        subjects[skey] = SubjectSpec(skey, cid, "random", allow_t13=True, primary_case=f"spineweb/{cid}",
                                     n_lesions=n_les, n_fractures=n_frac)
        fmt = "nii.gz" if centroid_only else formats[i % len(formats)]
        cases.append(CasePlan("spineweb", cid, skey, "spineweb", extra={"format": fmt, "centroid_only": centroid_only},
                              avoid_fov=("cervical",) if n_frac else ()))

    # --- DICOM cohort: metastasis patients; label files, SEG and RTSTRUCT in turn; extra series in some studies.
    rng = rng_for(seed, "plan", "dicom")
    kinds = ("nifti", "seg", "rtstruct")
    for i in range(n):
        pid = f"patient{i + 1:03d}"
        skey = f"dicom:{pid}"
        n_les, n_frac = _pathology(rng, i, mets=True)
        l6 = i == 1
        subjects[skey] = SubjectSpec(skey, pid, "L6" if l6 else "random", allow_t13=True,
                                     primary_case=f"dicom/{pid}", n_lesions=n_les, n_fractures=n_frac, p_lytic=0.55)
        annotation = kinds[i] if i < 3 else ("nifti", "seg")[i % 2]
        cases.append(CasePlan("dicom", pid, skey, "dicom", fov="lumbar" if l6 else None, extra={
            "annotation": annotation,
            "localizer": i % 3 in (0, 1),
            "soft_series": i % 3 in (0, 2),
            "shuffle": i % 2 == 0,
            "study": "study1",
        }))

    cases = [replace(c, randomise=float(randomise)) for c in cases]

    # --- Held-out scanner styles.
    for name in extra_styles:
        rng = rng_for(seed, "plan", f"extra_{name}")
        for i in range(int(extra_cases)):
            cid = f"{name}_{i + 1:03d}"
            skey = f"extra_{name}:{cid}"
            n_les, n_frac = _pathology(rng, i)
            subjects[skey] = SubjectSpec(skey, cid, "random", allow_t13=True, primary_case=f"extra_{name}/{cid}",
                                         n_lesions=n_les, n_fractures=n_frac)
            cases.append(CasePlan(f"extra_{name}", cid, skey, name, avoid_fov=("cervical",) if n_frac else ()))
    return Plan(seed, subjects, cases)
