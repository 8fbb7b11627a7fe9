"""Fit the phantoms' vertebra shape model (vertebraformer_nn/phantoms/shape_model.py) to real vertebra masks and
write its parameters to vertebraformer_nn/phantoms/vertebra_params.py.

    python tools/fit_vertebra_shapes.py [--real ../shared/data/real] [--out OUT.py] [--cache fits.npz]

Reads the real manual VerSe masks "for shapes" (shape_check.SHAPE_MASKS: verse004 T9-L5, verse010 L1-L5, gl003
C1-T5, gl017 C1-T4; never the files kept for checking). Each vertebra is cut out on a 1 mm grid (0.7 mm for
cervical levels) in a frame from its centroid file (up from the neighbours; C1 looks to the back as C2 does),
its parameters are started from landmarks of the mask (body extent, canal, spinous, transverse and articular
process tips) and fitted, together with a rigid pose, by gradient descent on a soft Dice (Adam; sigmoid
occupancy of the model's signed distance, its temperature annealed from 1.5 to 0.35 mm; after each step the
parameters are projected onto anatomy, see ``_keep_plausible``). A level held by several healthy vertebrae then
gets one shape fitted to all of them at once, each keeping its own pose and size (averaging separate fits would
mix parts that the fits used differently). vertebra_table.py turns the fits into the level table (fractured
bodies' heights left out, T6-T8 interpolated, disc heights from neighbouring poses, C1 on C2's dens axis). The
written module holds numbers only (the masks are never copied; ``sub-gl*`` masks are CC BY-NC-ND). Takes about
an hour on one idle core (``--cache`` keeps finished fits); prints each fit's soft Dice.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vertebraformer_nn import labels  # noqa: E402
from vertebraformer_nn.phantoms import shape_model as sm  # noqa: E402
from vertebraformer_nn.phantoms.shape_check import RealVertebra, load_real_vertebrae  # noqa: E402
from vertebra_table import Fit, Fits, level_table, write_params  # noqa: E402  (tools/ is on sys.path)



# --- initial parameters from landmarks of the mask ---------------------------------------------------------------


def _run(values: np.ndarray, start: float) -> Tuple[float, float]:
    """The extent of the contiguous run of occupied 1-D positions (sorted, 1 unit apart) that holds ``start``."""
    v = np.unique(np.round(values))
    if not len(v):
        return start, start
    k = int(np.argmin(np.abs(v - start)))
    lo = hi = k
    while lo > 0 and v[lo] - v[lo - 1] <= 1.5:
        lo -= 1
    while hi < len(v) - 1 and v[hi + 1] - v[hi] <= 1.5:
        hi += 1
    return float(v[lo]), float(v[hi])


def initial(name: str, q: np.ndarray, spacing: float) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """(parameters, body centre) from the mask's points ``q`` in the starting frame (x left, y post, z up)."""
    x, y, z = q[:, 0] / spacing, q[:, 1] / spacing, q[:, 2] / spacing  # in grid steps for the runs
    near = lambda a, w: np.abs(a) < w / spacing  # noqa: E731
    # Body: the run through the centroid along each axis, on lines through the centre.
    y0, y1 = _run(y[near(x, 3) & near(z, 3)], 0.0)
    yc = 0.5 * (y0 + y1)
    x0, x1 = _run(x[near(y - yc, 3) & near(z, 3)], 0.0)
    z0, z1 = _run(z[near(x, 3) & near(y - yc, 3)], 0.0)
    s = spacing
    front, back_wall = -(yc - y0) * s, (y1 - yc) * s
    rl, hb = 0.5 * (x1 - x0) * s, 0.5 * (z1 - z0) * s
    centre = np.array([0.0, yc * s, 0.5 * (z0 + z1) * s])
    q = q - centre
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    ra = -front
    p: Dict[str, np.ndarray] = {}
    back = back_wall
    # Canal: the gap behind the back wall on the midline, at the height where it is deepest.
    mid = np.abs(x) < 2.0
    lam_y, lam_z = back + 14.0, 0.0
    best = 0.0
    for zz in np.arange(-hb, hb + 0.1, 1.0):
        ys = np.sort(y[mid & (np.abs(z - zz) < 1.0) & (y > back + 1.0)])
        if len(ys) and ys[0] - back > best:
            best, lam_y, lam_z = ys[0] - back, ys[0], zz
    rca = max(0.5 * (lam_y - back), 4.0)
    ycc = back + rca
    xs = np.sort(np.abs(x[(np.abs(y - ycc) < 1.5) & (np.abs(z - lam_z) < 2.0)]))
    rcl = float(xs[0]) if len(xs) else 9.0
    rcl = min(max(rcl, 6.0), 16.0)
    post = y > back + 2.0
    side = lambda sel: (np.abs(x) > rcl) & sel  # noqa: E731

    def tip(sel, key):
        pts = q[sel]
        if not len(pts):
            return None
        k = np.argmax(key(pts))
        t = pts[k].copy()
        t[0] = abs(t[0])
        return t

    sp = tip(np.abs(x) < 4.0, lambda a: a[:, 1])
    tp = tip(np.ones(len(q), bool), lambda a: np.abs(a[:, 0]))
    sap = tip(side(post), lambda a: a[:, 2])
    iap = tip(side(post), lambda a: -a[:, 2])
    rp = 0.25 * rca + 2.0
    x_ped = rcl + rp
    pillar = np.array([x_ped + 0.5 * rp, ycc + 0.4 * rca, lam_z + 0.3 * hb])
    p["body_r"] = np.array([ra] + [float(np.hypot(rl * np.sin(t), (ra if t < np.pi / 2 else back) * np.cos(t)))
                                   for t in np.deg2rad(sm.PROFILE_DEG[1:])])
    p["body_h"] = np.array([hb, 0.0, 0.0])
    p["body_cv"] = np.array([0.8])
    p["body_waist"] = np.array([0.05])
    p["ped_a"] = np.array([x_ped, back - 3.0, 0.25 * hb])
    p["ped_b"] = pillar.copy()
    p["ped_r"], p["ped_s"] = np.array([rp]), np.array([1.4])
    p["lam_m"] = np.array([lam_y + 2.0, lam_z])
    p["lam_r"], p["lam_s"] = np.array([2.2]), np.array([2.0])
    sp = sp if sp is not None else np.array([0.0, lam_y + 25.0, lam_z - 10.0])
    p["sp_tip"] = np.array([sp[1], sp[2]])
    p["sp_r"], p["sp_s"] = np.array([3.0]), np.array([1.8])
    p["tp_a"] = pillar + [0.0, -1.0, 0.0]
    p["tp_tip"] = tp if tp is not None else pillar + [20.0, 0.0, 0.0]
    p["tp_r"], p["tp_s"] = np.array([3.0]), np.array([1.3])
    p["sap_a"] = pillar.copy()
    p["sap_tip"] = sap if sap is not None else pillar + [0.0, 2.0, hb]
    p["sap_r"] = np.array([0.8 * rp])
    p["iap_a"] = pillar + [0.0, 3.0, -0.3 * hb]
    p["iap_tip"] = iap if iap is not None else pillar + [0.0, 5.0, -hb]
    p["iap_r"] = np.array([0.8 * rp])
    if name[0] == "C":
        p["tpa_a"] = np.array([0.8 * rl, -0.3 * ra, 0.0])
        p["tpa_r"] = np.array([2.0])
        if name == "C2":
            p["dens"] = np.array([-0.1 * ra, -0.1 * ra, hb + 14.0, 5.0])
        else:
            p["unc"] = np.array([0.85 * rl, -0.5 * ra, 0.5 * ra, 3.5])
    return p, centre


def initial_atlas(q: np.ndarray) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """C1: the ring's parameters from its extent (start frame: origin near the ring's centre)."""
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    centre = np.array([0.0, 0.5 * (y.min() + y.max()), float(np.median(z))])
    q = q - centre
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    front, rear = float(y.min()), float(y.max())
    width = float(np.abs(x).max())
    lat = q[np.abs(x) > 0.3 * width]
    lm = np.array([float(np.median(np.abs(lat[:, 0]))), float(np.median(lat[:, 1])), float(np.median(lat[:, 2]))])
    p = {
        "aa_m": np.array([front + 3.0, 0.0]), "aa_l": np.array([lm[0] - 4.0, lm[1] - 6.0, 0.0]),
        "aa_r": np.array([3.0]), "aa_s": np.array([1.6]),
        "lm_c": lm, "lm_r": np.array([6.0, 9.0, 7.0]),
        "pa_l": np.array([lm[0] - 3.0, lm[1] + 8.0, 0.0]), "pa_m": np.array([rear - 3.0, 1.0]),
        "pa_r": np.array([3.0]), "pa_s": np.array([1.5]),
        "tp_a": lm + [3.0, 0.0, 0.0], "tp_tip": np.array([width - 3.0, lm[1], lm[2]]),
        "tp_r": np.array([3.5]), "tp_s": np.array([1.2]),
    }
    return p, centre


# --- fitting ---------------------------------------------------------------------------------------------------------


def _rotation(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrix of the rotation vector ``w``."""
    theta = torch.sqrt((w * w).sum() + 1e-12)
    k = w / theta
    kx = torch.zeros(3, 3, dtype=w.dtype)
    kx[0, 1], kx[0, 2], kx[1, 0], kx[1, 2], kx[2, 0], kx[2, 1] = -k[2], k[1], k[2], -k[0], -k[1], k[0]
    return torch.eye(3, dtype=w.dtype) + torch.sin(theta) * kx + (1 - torch.cos(theta)) * (kx @ kx)


def _model_sdf(params: Dict[str, torch.Tensor], name: str, q: torch.Tensor) -> torch.Tensor:
    body, other = sm.parts(params, name)
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    d = None
    for part in (*body, *other):
        e = part.sdf(x, y, z)
        d = e if d is None else torch.minimum(d, e)
    return d


@torch.no_grad()
def _keep_plausible(params: Dict[str, torch.Tensor], start: Dict[str, np.ndarray]) -> None:
    """Project the parameters back onto anatomy after each step, so that a body cannot turn into a lens or swell
    over its pedicles, nor a part wander off to stand in for another, to win a little Dice: endplates concave
    (0-2.5 mm), the height at least 3/4 of the measured one, the outline narrowing from the sides to the back,
    endplate wedges of at most 30 % of the height, a modest waist, cervical lips and bars where they belong, radii
    and stretches in sensible ranges."""
    if "body_r" in params:
        r = params["body_r"]
        r.clamp_(min=3.0)
        r[4].clamp_(max=float(1.05 * r[3]))
        r[5].clamp_(max=float(r[4]))
        r[6].clamp_(max=float(r[5]))
        h = params["body_h"]
        h[0].clamp_(min=float(0.75 * start["body_h"][0]))
        h[1:].clamp_(min=float(-0.6 * h[0]), max=float(0.6 * h[0]))
        params["body_cv"].clamp_(0.0, 2.5)
        params["body_waist"].clamp_(-0.05, 0.25)
        # Cervical features keep their anatomy: the uncinate lips on the rim of the upper endplate, the anterior bar
        # of the transverse process from the side of the body out to a tip beyond it (enclosing the foramen).
        r0, r90, r180 = (float(r[k]) for k in (0, 3, 6))
        if "unc" in params:
            u = params["unc"]
            u[0].clamp_(0.6 * r90, 0.95 * r90)
            u[1].clamp_(-0.7 * r0, -2.0)
            u[2].clamp_(2.0, max(0.8 * r180, 2.5))
            u[3].clamp_(1.5, 6.0)
        if "tpa_a" in params:
            a = params["tpa_a"]
            a[0].clamp_(max=r90 + 2.0)
            a[1].clamp_(-r0, r180)
            params["tp_tip"][0].clamp_(min=float(a[0]) + 4.0)
    for k, v in params.items():
        if k.endswith("_r"):
            v.clamp_(min=0.8)
        elif k.endswith("_s"):
            v.clamp_(0.7, 5.0)


def _target(real: RealVertebra, frame: np.ndarray, origin: np.ndarray):
    """(coordinates in ``frame`` about ``origin`` of the voxels within 10 mm of the vertebra, their occupancy,
    the total occupancy, the coordinates of the voxels inside)."""
    grid = np.argwhere(np.ones(real.mask.shape, bool))
    local = (real.origin + real.spacing * grid[:, ::-1] - origin) @ frame
    target = real.mask.reshape(-1).astype(np.float32)
    keep = ndimage.binary_dilation(real.mask >= 0.5, iterations=int(np.ceil(10.0 / real.spacing))).reshape(-1)
    return local[keep], target[keep], float(target.sum()), local[target >= 0.5]


def _soft_dice(params, name, q, target, target_sum, w, shift, log_size, tau):
    """Soft Dice of the model, posed by rotation vector ``w``, ``shift`` and size exp(``log_size``), at points q."""
    size = torch.exp(log_size)
    qq = ((q - shift) @ _rotation(w)) / size
    occ = torch.sigmoid(-_model_sdf(params, name, qq) * size / tau)
    return 2 * (occ * target).sum() / (occ.sum() + target_sum)


def _optimise(params, name, data, iterations, lr, tau0, start):
    """Adam on 1 - mean soft Dice over ``data`` (per real vertebra: points, target, its sum, pose tensors (rotation
    vector, shift, log size)), the temperature annealed from ``tau0`` to 0.35 mm, the parameters projected onto
    anatomy after each step. Sizes are relative (their mean log stays 0: the shape carries the mean size); a
    single vertebra keeps size 1. Returns each vertebra's soft Dice."""
    groups = [{"params": list(params.values()), "lr": lr}, {"params": [d[3][0] for d in data], "lr": 0.01},
              {"params": [d[3][1] for d in data], "lr": 0.3}]
    if len(data) > 1:
        groups.append({"params": [d[3][2] for d in data], "lr": 0.005})
    opt = torch.optim.Adam(groups)
    dice = [0.0] * len(data)
    for it in range(iterations):
        f = it / max(iterations - 1, 1)
        tau = tau0 * (1 - f) + 0.35 * f
        opt.param_groups[0]["lr"] = lr * (1 - f) + 0.03 * f
        softs = [_soft_dice(params, name, q, t, ts, *pose, tau) for q, t, ts, pose in data]
        reg = sum(torch.relu(0.8 - v).sum() for k, v in params.items() if k.endswith(("_r", "_s")))
        loss = 1 - sum(softs) / len(softs) + 0.05 * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        _keep_plausible(params, start)
        if len(data) > 1:
            with torch.no_grad():
                mean = sum(d[3][2] for d in data) / len(data)
                for d in data:
                    d[3][2].sub_(mean)
        dice = [v.item() for v in softs]
    return dice


def _pose_matrix(frame: np.ndarray, origin: np.ndarray, w, shift, log_size) -> np.ndarray:
    """4x4 model frame -> LPS mm: world = origin + frame @ (rot(w) @ (size * m) + shift)."""
    pose = np.eye(4)
    pose[:3, :3] = frame @ _rotation(w).detach().numpy().astype(np.float64) * torch.exp(log_size).item()
    pose[:3, 3] = origin + frame @ shift.detach().numpy().astype(np.float64)
    return pose


def _pose_tensors():
    return (torch.full((3,), 1e-4, requires_grad=True), torch.zeros(3, requires_grad=True),
            torch.zeros((), requires_grad=True))


def fit_one(real: RealVertebra, iterations: int = 240) -> Fit:
    """(parameters, 4x4 pose model frame -> LPS mm, soft Dice) of one real vertebra, from landmarks of its mask."""
    frame = real.hint_frame()
    q, target, target_sum, inside = _target(real, frame, real.centroid)
    p0, centre = initial_atlas(inside) if real.name == "C1" else initial(real.name, inside, real.spacing)
    params = {k: torch.tensor(np.asarray(v, np.float32), requires_grad=True) for k, v in p0.items()}
    pose = _pose_tensors()
    data = [(torch.tensor(q - centre, dtype=torch.float32), torch.tensor(target), target_sum, pose)]
    (dice,) = _optimise(params, real.name, data, iterations, 0.4, 1.5, p0)
    out = {k: v.detach().numpy().astype(np.float64) for k, v in params.items()}
    return out, _pose_matrix(frame, real.centroid + frame @ centre, *pose), dice


def fit_joint(reals: List[RealVertebra], fits: Fits, iterations: int = 150
              ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], float]:
    """One shape for a level's vertebrae of several subjects, each with its own pose and size, started from the
    mean of their own fits: (parameters, subject -> 4x4 pose with the size as scale, mean soft Dice)."""
    name = reals[0].name
    own = [fits[(r.subject, name)] for r in reals]
    p0 = {k: np.mean([f[0][k] for f in own], axis=0) for k in own[0][0]}
    params = {k: torch.tensor(np.asarray(v, np.float32), requires_grad=True) for k, v in p0.items()}
    data = []
    for r, (_, pose, _) in zip(reals, own):
        q, target, target_sum, _ = _target(r, pose[:3, :3], pose[:3, 3])
        data.append((torch.tensor(q, dtype=torch.float32), torch.tensor(target), target_sum, _pose_tensors()))
    dice = _optimise(params, name, data, iterations, 0.15, 0.8, p0)
    out = {k: v.detach().numpy().astype(np.float64) for k, v in params.items()}
    poses = {r.subject: _pose_matrix(pose[:3, :3], pose[:3, 3], *d[3]) for r, (_, pose, _), d in zip(reals, own, data)}
    return out, poses, float(np.mean(dice))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--out", type=Path, default=REPO / "vertebraformer_nn" / "phantoms" / "vertebra_params.py")
    ap.add_argument("--cache", type=Path, help="keep the fits in this .npz file (and <name>_joint.npz) and reuse them")
    ap.add_argument("--refit", nargs="*", default=[], metavar="LEVEL", help="fit these levels again despite the cache")
    ap.add_argument("--iterations", type=int, default=240)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    joint_cache = args.cache.with_name(args.cache.stem + "_joint.npz") if args.cache else None
    fits: Fits = load_fits(args.cache) if args.cache and args.cache.is_file() else {}
    joint: Dict[str, tuple] = load_joint(joint_cache) if joint_cache and joint_cache.is_file() else {}
    for spacing, region in ((0.7, "cervical"), (1.0, None)):
        codes = [c for c in labels.ANATOMICAL_ORDER_CODES if (labels.region(c) == "cervical") == (region == "cervical")]
        reals: List[RealVertebra] = load_real_vertebrae(args.real, spacing, margin_mm=8.0, codes=codes)
        for r in reals:
            if (r.subject, r.name) in fits and r.name not in args.refit:
                continue
            t0 = time.perf_counter()
            fits[(r.subject, r.name)] = fit_one(r, args.iterations)
            print(f"{r.subject} {r.name}: soft Dice {fits[(r.subject, r.name)][2]:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.cache:
                save_fits(fits, args.cache)
        # A level held by several healthy vertebrae gets one shape fitted to all of them.
        healthy: Dict[str, List[RealVertebra]] = {}
        for r in reals:
            if not r.fractured:
                healthy.setdefault(r.name, []).append(r)
        for name, group in healthy.items():
            if len(group) < 2 or (name in joint and name not in args.refit):
                continue
            t0 = time.perf_counter()
            joint[name] = fit_joint(group, fits)
            print(f"joint {name} ({len(group)} subjects): mean soft Dice {joint[name][2]:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if joint_cache:
                save_joint(joint, joint_cache)
    table = level_table(fits, {name: (p, poses) for name, (p, poses, _) in joint.items()})
    dice = {**{f"{s}:{n}": d for (s, n), (_, _, d) in fits.items()},
            **{f"joint:{n}": d for n, (_, _, d) in joint.items()}}
    write_params(table, dice, args.out)
    print(f"wrote {args.out}")
    return 0


def save_joint(joint: Dict[str, tuple], path: Path) -> None:
    arrays = {}
    for name, (p, poses, dice) in joint.items():
        arrays[f"{name}|dice"] = np.array([dice])
        arrays.update({f"{name}|p|{k}": v for k, v in p.items()})
        arrays.update({f"{name}|pose|{s}": v for s, v in poses.items()})
    np.savez(path, **arrays)


def load_joint(path: Path) -> Dict[str, tuple]:
    out: Dict[str, list] = {}
    with np.load(path) as data:
        for key in data.files:
            name, what, *rest = key.split("|")
            entry = out.setdefault(name, [{}, {}, 0.0])
            if what == "dice":
                entry[2] = float(data[key][0])
            else:
                entry[0 if what == "p" else 1][rest[0]] = data[key]
    return {k: tuple(v) for k, v in out.items()}


def save_fits(fits: Fits, path: Path) -> None:
    arrays = {}
    for (subject, name), (p, pose, dice) in fits.items():
        arrays[f"{subject}|{name}|pose"] = pose
        arrays[f"{subject}|{name}|dice"] = np.array([dice])
        arrays.update({f"{subject}|{name}|p|{k}": v for k, v in p.items()})
    np.savez(path, **arrays)


def load_fits(path: Path) -> Fits:
    out: Dict[Tuple[str, str], list] = {}
    with np.load(path) as data:
        for key in data.files:
            subject, name, what, *rest = key.split("|")
            entry = out.setdefault((subject, name), [{}, None, 0.0])
            if what == "p":
                entry[0][rest[0]] = data[key]
            elif what == "pose":
                entry[1] = data[key]
            else:
                entry[2] = float(data[key][0])
    return {k: tuple(v) for k, v in out.items()}


if __name__ == "__main__":
    raise SystemExit(main())
