import sys, numpy as np, SimpleITK as sitk, cc3d
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
from scipy import ndimage
Q = "/tmp/vf_protocol_q7"; case = sys.argv[1]; fold = sys.argv[2]
ct = sitk.GetArrayFromImage(sitk.ReadImage(f"{Q}/inputs/{fold}/{case}_0000.nii.gz")).astype(float)
les = sitk.GetArrayFromImage(sitk.ReadImage(f"{Q}/reference/{case}_lesion.nii.gz")) > 0
cand = sitk.GetArrayFromImage(sitk.ReadImage(f"/tmp/s18/pred_builtin_proto/{case}_lesion_candidates.nii.gz"))
lab = cc3d.connected_components(les)
n = lab.max(); fig, ax = plt.subplots(n, 2, figsize=(9, 4.2 * n), squeeze=False)
print(ct.shape, sitk.ReadImage(f"{Q}/inputs/{fold}/{case}_0000.nii.gz").GetSpacing())
for k in range(1, n + 1):
    m = lab == k; c = [int(round(v)) for v in ndimage.center_of_mass(m)]
    ax[k-1, 0].imshow(ct[c[0]], cmap='gray', vmin=-200, vmax=900); ax[k-1, 0].contour(m[c[0]], colors='r', linewidths=0.8)
    ax[k-1, 0].contour(cand[c[0]] > 0, colors='y', linewidths=0.8); ax[k-1, 0].set_title(f"lesion {k} mean {ct[m].mean():.0f} HU, {m.sum()} vox")
    ax[k-1, 1].imshow(ct[:, c[1]], cmap='gray', vmin=-200, vmax=900, aspect='auto'); ax[k-1, 1].contour(m[:, c[1]], colors='r', linewidths=0.8)
    ax[k-1, 1].contour(cand[:, c[1]] > 0, colors='y', linewidths=0.8)
for a in ax.ravel(): a.axis('off')
plt.tight_layout(); plt.savefig(f'/tmp/s18/look_{case}.png', dpi=60)
