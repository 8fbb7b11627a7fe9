"""Converters of the four MultiSpine sources into one nnU-Net raw dataset (DESIGN.md section 3).

Public API::

    convert_source(source, root, dataset_id, append=False, **options) -> SourceReport
    finalize(dataset_id) -> FinalizeReport

One module per source (verse, ctspine1k, spineweb, dicom_cohort) finds its cases; common.py holds what every
source shares (grid check, RAS reorientation, label mapping, writing a case), partial_vertebrae.py the policy for
vertebrae cut by the field of view (nnU-Net's ignore label);
convert.py runs one source into the dataset; multispine.py assembles it (de-duplication, dataset.json,
splits via splits.py, nnU-Net's integrity check); cli.py is ``vertebraformer convert``.
"""
from .common import SOURCES, CaseRecord, ConversionError, SkipRecord
from .convert import SourceReport, convert_source
from .multispine import FinalizeReport, finalize

__all__ = ["SOURCES", "CaseRecord", "ConversionError", "SkipRecord", "SourceReport", "FinalizeReport",
           "convert_source", "finalize"]
