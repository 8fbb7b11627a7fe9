"""``vertebraformer evaluate``: segmentation, numbering and lesion metrics of a prediction folder against a
reference (an nnU-Net raw dataset or a folder of VerSe-coded label maps), with patient-level BCa bootstrap
intervals, per domain and in-domain vs cross-domain (DESIGN.md section 8).

Modules (imported on demand, so this package imports nothing heavy):

* ``metrics``: pure segmentation (the one Dice, HD95, binary spine Dice) and numbering (VerSe identification rate,
  localisation distance) functions;
* ``lesion_metrics``: pure lesion-instance matching, precision, recall, average precision;
* ``border``: the border rule (vertebrae cut by the field of view are scored neither way);
* ``bootstrap``: patient-level BCa intervals of means, ratios and pooled statistics;
* ``references``: what the reference is, its cases and how its label values read;
* ``scoring``: one case, every metric;
* ``aggregation``: group summaries;
* ``evaluate``: the whole evaluation, in that order;
* ``report``: the JSON and markdown reports;
* ``perturbations``: image perturbations for the robustness benchmark;
* ``cli``: the ``evaluate`` subcommand.
"""
