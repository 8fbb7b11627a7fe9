"""``vertebraformer evaluate``: segmentation, numbering and lesion metrics of a prediction folder against a
reference (an nnU-Net raw dataset or a folder of VerSe-coded label maps), with patient-level BCa bootstrap
intervals, per domain and in-domain vs cross-domain (DESIGN.md section 8).

Modules (imported on demand, so this package imports nothing heavy):

* ``metrics``: pure segmentation (Dice, HD95, binary spine Dice) and numbering (VerSe identification rate,
  localisation distance) functions;
* ``lesion_metrics``: pure lesion-instance matching, precision, recall, average precision;
* ``bootstrap``: patient-level BCa intervals of means, ratios and pooled statistics;
* ``evaluate``: reads the folders, evaluates each case, aggregates per group;
* ``report``: the JSON and markdown reports;
* ``cli``: the ``evaluate`` subcommand.
"""
