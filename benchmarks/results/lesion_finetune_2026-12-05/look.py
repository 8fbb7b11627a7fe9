import sys, numpy as np, SimpleITK as sitk, cc3d
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
from scipy import ndimage
cases = [("/tmp/held_out/s4/extra_lowdose", "/tmp/held_out/ld4_ref", "ld4", "lowdose_005"),
         ("/tmp/held_out/s4/extra_lowdose", "/tmp/held_out/ld4_ref", "ld4", "lowdose_007"),
         ("/tmp/tta/ld0/extra_lowdose", "/tmp/tta/ld0_ref", "ld0", "lowdose_003"),
         ("/tmp/held_out/s2/extra_hushift", "/tmp/held_out/hs2_ref", "hs2", "hushift_005")]
fig, ax = plt.subplots(len(cases), 3, figsize=(12, 4 * len(cases)))
for r, (ctd, ref, s, c) in enumerate(cases):
    ct = sitk.GetArrayFromImage(sitk.ReadImage(f"{ctd}/{c}.nii.gz")).astype(float)
    les = sitk.GetArrayFromImage(sitk.ReadImage(f"{ref}/{c}_lesion.nii.gz")) > 0
    cand = sitk.GetArrayFromImage(sitk.ReadImage(f"/tmp/s18/pred_builtin_{s}/{c}_lesion_candidates.nii.gz"))
    lab = cc3d.connected_components(les)
    for k in range(1, lab.max() + 1):
        m = lab == k
        if ct[m].mean() > 400: continue  # blastic
        z = int(np.round(ndimage.center_of_mass(m)[0]))
        ax[r, 0].imshow(ct[z], cmap='gray', vmin=-200, vmax=700); ax[r, 0].contour(m[z], colors='r', linewidths=0.7)
        ax[r, 0].set_title(f"{s} {c} axial z={z} lesion mean {ct[m].mean():.0f} HU")
        y = int(np.round(ndimage.center_of_mass(m)[1]))
        ax[r, 1].imshow(ct[:, y], cmap='gray', vmin=-200, vmax=700, aspect='auto'); ax[r, 1].contour(m[:, y], colors='r', linewidths=0.7)
        ax[r, 1].contour(cand[:, y] > 0, colors='y', linewidths=0.7); ax[r, 1].set_title("coronal, yellow: candidates")
        sm = ndimage.gaussian_filter(ct[z], 1.5)
        ax[r, 2].imshow(sm, cmap='gray', vmin=-200, vmax=700); ax[r, 2].contour(m[z], colors='r', linewidths=0.7)
        ax[r, 2].set_title("smoothed 1.5 vox"); break
for a in ax.ravel(): a.axis('off')
plt.tight_layout(); plt.savefig('/tmp/s18/missed_lytic.png', dpi=70)
