"""Inference: prediction of CT folders, vertebra numbering, lesion instances and the per-case output files.

Rooms, in the order a case passes them: ``cases`` (inputs), ``predictor`` (nnU-Net's sliding window for every
head), ``probabilities`` (saved probabilities, the one averaging rule), ``export`` (model grid -> input grid),
``numbering`` (the steps: ``instances``, ``level_evidence``, ``decoder``), ``lesions``, ``case_outputs`` and
``preview`` (the files), ``summary`` (summary.csv); ``runner`` loops over a folder, ``predict_folder`` and
``ensemble`` are the commands as functions. ``postprocessing`` holds every tuned constant of prediction (with the
model folder's ``postprocessing.json``), chosen by ``postprocessing_search`` on ``validation_cases``.

Submodules are imported where they are used; importing this package loads neither torch nor nnU-Net, so
the pure parts (numbering, lesion instances) stay cheap to import and test.
"""
