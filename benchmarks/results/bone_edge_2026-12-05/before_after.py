"""verse014 and example_ct: reference boundary, prediction before/after the bone edge, three slices each.

    python before_after.py OUT_OF_RUN_SH PICTURE.png REAL_CT_INPUT_FOLDER   (real_ct.py's <work>/input)
"""
import sys, numpy as np, SimpleITK as sitk, matplotlib
matplotlib.use('Agg'); import matplotlib.pyplot as plt
from skimage.segmentation import find_boundaries
sys.path.insert(0, '/work/main/benchmarks'); import real_ct as rc
from pathlib import Path
D = Path('/work/shared/data/real'); R = Path(sys.argv[1]); out = sys.argv[2]
cases = [('verse014', 'verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz', 'verse', 0, [14, 20, 26]),
         ('example_ct', 'totalsegmentator/spine_report/totalseg.nii.gz', 'totalseg', 2, None)]
fig, ax = plt.subplots(4, 3, figsize=(13, 17))
row = 0
for name, ref, cod, axis, slices in cases:
    r, _ = rc.read_reference(D / ref, cod)
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(sys.argv[3]) / f'{name}.nii.gz'))).astype(float)
    if slices is None:  # sagittal slices through the spine for the axial abdomen scan
        xs = np.nonzero((r > 0).any(axis=(0, 1)))[0]; mid = int(np.median(xs)); slices = [mid - 6, mid, mid + 6]
    for band in ('0', '2'):
        p = sitk.GetArrayFromImage(sitk.ReadImage(str(R / f'real_{band}/predictions/{name}.nii.gz'))) > 0
        for j, z in enumerate(slices):
            take = lambda a: np.take(a, z, axis=axis)
            img, m, rr = take(ct), take(p), take(r > 0)
            if axis == 2: img, m, rr = img[::-1], m[::-1], rr[::-1]  # head up
            a = ax[row, j]; a.imshow(img, cmap='gray', vmin=-200, vmax=900, aspect='auto')
            rgb = np.zeros(img.shape + (4,)); rgb[m & ~rr] = [1, 0, 0, .5]; rgb[rr & ~m] = [0, .4, 1, .6]; a.imshow(rgb, aspect='auto')
            b = np.zeros(img.shape + (4,)); b[find_boundaries(rr)] = [0, 1, 0, 1]; a.imshow(b, aspect='auto')
            a.set_title(f"{name} slice {z}: {'network boundary' if band == '0' else 'on the bone edge (2 mm band)'}", fontsize=9); a.axis('off')
        row += 1
fig.suptitle('green: reference boundary; red: predicted, not in the reference; blue: reference, not predicted', fontsize=11)
plt.tight_layout(); plt.savefig(out, dpi=48)
