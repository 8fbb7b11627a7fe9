"""Predict a folder with the built-in model, saving each case's numbering inputs to /tmp/cap/p/<case>.pkl."""
import pickle, sys, os
CAPDIR = os.environ.get("CAPDIR", "/tmp/cap/p")
from pathlib import Path
import vertebraformer_nn.inference.export as ex
CUR = {}
_ec = ex.export_case
def ec(out_dir, ct, probs, meta, **kw):
    CUR["case"] = meta["case"]
    return _ec(out_dir, ct, probs, meta, **kw)
ex.export_case = ec
_nv = ex.number_vertebrae
def nv(probs, spacing, axis, sign, params=None, hu=None, **kw):
    pickle.dump(dict(probs=probs, spacing=spacing, axis=axis, sign=sign, params=params, hu=hu),
                open(f"{CAPDIR}/{CUR['case']}.pkl", "wb"))
    return _nv(probs, spacing, axis, sign, params=params, hu=hu, **kw)
ex.number_vertebrae = nv
_fi = ex.model_grid_hu.from_input
def fi(arr, grid):
    pickle.dump(grid, open(f"{CAPDIR}/{CUR['case']}_grid.pkl", "wb"))
    return _fi(arr, grid)
ex.model_grid_hu.from_input = fi
if __name__ == "__main__":
    os.makedirs(CAPDIR, exist_ok=True)
    from vertebraformer_nn.cli import main
    main(["predict", "-i", sys.argv[1], "-o", sys.argv[2], "--disable_progress_bar"] + sys.argv[3:])
