"""A/B the numbering on captured inputs: per reference vertebra, the predicted code overlapping it most == its code."""
import pickle, numpy as np, SimpleITK as sitk, sys, glob, os, json, dataclasses
CAPDIR = os.environ.get("CAPDIR", "/tmp/cap/p")
SET = dict(a.split("=") for a in sys.argv[1:] if "=" in a)
from vertebraformer_nn.inference import model_grid_hu
from vertebraformer_nn.inference.numbering import number_vertebrae
from vertebraformer_nn.inference.postprocessing import DEFAULTS
from vertebraformer_nn import labels
R="/work/shared/data/real/"
REAL={"verse014":R+"verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz","tptbox":R+"tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz",
      "example_ct":R+"totalsegmentator/spine_report/totalseg.nii.gz"}
def ref_for(case):
    if case in REAL: return REAL[case]
    for s in ("lowdose","thickslice"):
        if case.startswith(s): return f"/tmp/s7/ref_extra_{s}/{case}.nii.gz"
tot=right=0; allright=0; ncase=0; out={}
for f in sorted(glob.glob(CAPDIR + "/*.pkl")):
    if f.endswith("_grid.pkl"): continue
    case=os.path.basename(f)[:-4]
    rf=ref_for(case)
    d=pickle.load(open(f,"rb")); grid=pickle.load(open(f[:-4]+"_grid.pkl","rb"))
    pp=dataclasses.replace(d["params"] or DEFAULTS, **{k: float(v) for k, v in SET.items()})
    res=number_vertebrae(d["probs"], d["spacing"], d["axis"], d["sign"], params=pp, hu=d["hu"])
    pred=labels.training_to_verse(res.labels)
    names=[i["name"] for i in res.instances]
    if rf is None:
        print(case, "pred", names); continue
    ref=model_grid_hu.from_input(sitk.GetArrayFromImage(sitk.ReadImage(rf)).astype(np.int16), grid)
    if case=="example_ct":
        ref=np.where((ref>=27)&(ref<=50), 51-ref, 0)  # TS -> VerSe codes for C1..L5 (TS 26 sacrum -> bg)
    codes=[int(c) for c in np.unique(ref) if 0<c<=28]
    ok=[]
    for c in codes:
        m=ref==c
        if m.sum()<20: continue
        cnt=np.bincount(pred[m].astype(int),minlength=30); cnt[0]=0
        ok.append((labels.name(c), labels.name(int(cnt.argmax())) if cnt.max() else "-", int(cnt.argmax())==c))
    r=sum(o[2] for o in ok); tot+=len(ok); right+=r; ncase+=1; allright+= r==len(ok)
    out[case]=ok
    if case in REAL or "-v" in sys.argv: print(case, f"{r}/{len(ok)}", [o[:2] for o in ok if not o[2]], "pred", names, res.quality.get("flag"))
print(f"phantom+real: id {right}/{tot} = {100*right/max(tot,1):.1f} %, all right {allright}/{ncase}")
for s in ("lowdose","thickslice"):
    ks=[k for k in out if k.startswith(s)]; a=sum(sum(o[2] for o in out[k]) for k in ks); b=sum(len(out[k]) for k in ks)
    print(s, f"{a}/{b} = {100*a/max(b,1):.1f} %", "all right", sum(all(o[2] for o in out[k]) for k in ks), "/", len(ks))
