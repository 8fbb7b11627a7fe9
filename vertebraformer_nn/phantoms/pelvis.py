"""The bones below the lumbar spine (all unlabelled, as in every source): sacrum and coccyx, the hip bones
(ilium, ischium, pubis) and the proximal femora.

Real scans that reach below L5 show these, and a network that never saw them marks the pelvis as vertebrae; so
they are drawn with the features a labeller uses to tell them apart. The sacrum is one curved, tapering bone
in S1's frame: S1's body shaped like the last lumbar's, the alae out to the sacroiliac joints, lateral masses
narrowing down to S4, a fused posterior arch with its median crest, and S1's superior articular processes
under the last lumbar's. Each hip bone is built in a pelvis frame at S1, tilted with the sacrum: a thin
iliac blade curving round the false pelvis (a clipped ellipsoidal shell) with a thick crest, a thick
posterior ilium meeting the sacrum across a joint space, the body above an acetabular cup, the ischium down to
its tuberosity, both pubic rami to the symphysis; the femoral head sits in the cup with a joint space, then
the neck, greater trochanter and shaft. Dimensions (mm, at scale 1) are those of an average adult pelvis
(inter-crest width about 280 mm, hip centres about 180 mm apart).
"""
from __future__ import annotations

from typing import List

import numpy as np

from .anatomy import Segment, Subject, frame_from_up, rot_x
from .sdf import Capsule, Ellipsoid, EllipsoidShell, VertebralBody
from .shapes import Solid, bone_material
from . import shape_model

JOINT_GAP = 2.5  # sacroiliac and hip joint spaces
#: Sections of the iliac blade, bottom to top (pelvis frame at S1, mm at scale 1): height; x beyond the sacroiliac
#: joint and y of its back end; x and y of its front end; how far it bows outwards. Low down the blade starts at
#: the joint; higher up it flares out to the crest (the top row).
_BLADE_ROWS = ((-58.0, 4.0, -5.0, 84.0, -48.0, 10.0), (-34.0, 6.0, 5.0, 92.0, -58.0, 14.0),
               (-10.0, 10.0, 15.0, 100.0, -68.0, 20.0), (14.0, 18.0, 24.0, 110.0, -74.0, 26.0),
               (38.0, 30.0, 30.0, 118.0, -70.0, 26.0), (54.0, 38.0, 28.0, 112.0, -58.0, 22.0))


def sacrum_solids(subject: Subject) -> List[Solid]:
    """The sacrum as one solid in S1's frame, so its five fused segments share one cortex, plus the coccygeal
    pieces as separate small bones."""
    segs = subject.sacrum
    s1, last = segs[0], subject.vertebrae[-1]
    r0, c0 = s1.rot, s1.centre

    def to_s1(seg: Segment, p) -> np.ndarray:
        return r0.T @ (seg.centre + seg.rot @ np.asarray(p, float) - c0)

    radii = 0.95 * np.asarray(last.shape["body_r"], float)
    parts: List = [VertebralBody(ra=s1.ra, rl=s1.rl, hb=s1.hb, concavity=0.6, waist=0.02,
                                 profile=shape_model.profile_coefficients(tuple(radii)), wedge=-3.0 * subject.scale)]
    sacral = segs[:5]
    for a, b in zip(sacral[:-1], sacral[1:]):
        # Lower segments: a tapered chain along the sacral curve (flattened front to back, wide left to right).
        parts.append(Capsule(tuple(to_s1(a, (0, 0, -0.3 * a.hb))), tuple(to_s1(b, (0, 0, 0))), 0.85 * b.ra,
                             (b.rl / b.ra, 1.0, 1.0)))
    for k, seg in enumerate(sacral):
        # Fused posterior arch: a plate behind the sacral canal with a median crest; lateral masses beside the body.
        y_post = seg.ra * 0.8 + 1.2 * last.rca * (1.0 - 0.15 * k) + 2.0
        parts.append(Capsule(tuple(to_s1(seg, (-0.8 * seg.rl, y_post, 0))),
                             tuple(to_s1(seg, (0.8 * seg.rl, y_post, 0))), 3.5, (1, 1, 2.5)))
        parts.append(Capsule(tuple(to_s1(seg, (0, y_post, 0))), tuple(to_s1(seg, (0, y_post + 6.0, -2.0))), 3.0,
                             (1, 1, 2.0)))
        for sx in (-1.0, 1.0):
            parts.append(Capsule(tuple(to_s1(seg, (sx * 0.6 * seg.rl, 0.5 * seg.ra, 0))),
                                 tuple(to_s1(seg, (sx * 0.75 * seg.rl, y_post, 0))), 4.0, (1, 1, 2.0)))
    # Lateral masses (the alae at S1): one tapering plate per side from the body out to the sacroiliac joint, so that
    # the sacrum reads as one wedge-shaped bone narrowing downwards, not a stack of segments.
    for sx in (-1.0, 1.0):
        rows = []
        for k, seg in enumerate(sacral[:4]):
            reach = sacrum_half_width(subject, k)
            depth = 0.7 * seg.ra + 3.0
            rows.append((to_s1(seg, (sx * 0.5 * seg.rl, 0.35 * seg.ra, 0.0)),
                         to_s1(seg, (sx * (reach - depth), 0.35 * seg.ra, 0.0)), depth, seg.hb))
        for a, b in zip(rows[:-1], rows[1:]):
            for (p, q) in ((a[0], b[0]), (a[1], b[1])):
                parts.append(Capsule(tuple(p), tuple(q), 0.5 * (a[2] + b[2]), (1.0, 1.0, 1.3)))
        for inner, outer, depth, hb in rows:
            parts.append(Capsule(tuple(inner), tuple(outer), depth, (1.0, 1.0, max(hb + 2.0, depth) / depth)))
    for sx in (-1.0, 1.0):
        # S1's superior articular processes, under the last lumbar's inferior ones.
        ped = last.pedicle
        y = last.back + 1.6 * last.rca
        parts.append(Capsule((sx * (ped[0] + 2.0), y, 0.0), (sx * (ped[0] + 2.0), y + 2.0, s1.hb + 8.0),
                             0.9 * last.rp))
    out = [Solid("sacrum", c0, r0, tuple(parts), bone_material(subject, last.trabecular_hu))]
    for k, seg in enumerate(segs[5:], start=1):
        body = VertebralBody(ra=seg.ra, rl=seg.rl, hb=seg.hb, concavity=0.0, waist=0.0)
        out.append(Solid(f"coccyx_{k}", seg.centre, seg.rot, (body,), bone_material(subject, last.trabecular_hu)))
    return out


def sacrum_half_width(subject: Subject, k: int) -> float:
    """Half width of sacral segment k (0 = S1) to its lateral surface, the sacroiliac joint for S1-S3."""
    s1 = subject.sacrum[0]
    return (s1.rl + 36.0 * subject.scale) * (1.0, 0.86, 0.66, 0.46, 0.3)[k]


def pelvis_solids(subject: Subject) -> List[Solid]:
    """Both hip bones and femora, in a pelvis frame at S1 that follows the sacrum's tilt."""
    s1 = subject.sacrum[0]
    rot = frame_from_up(rot_x(np.deg2rad(subject.pelvic_tilt))[:, 2])  # upright, tilted about left-right
    s = subject.scale * subject.pelvis_width
    h = subject.scale
    x_si = sacrum_half_width(subject, 0) + JOINT_GAP
    mat = bone_material(subject, subject.vertebrae[-1].trabecular_hu + 20.0)
    out = []
    for sx, side in ((1.0, "L"), (-1.0, "R")):
        m = np.array([sx, 1.0, 1.0])

        def P(x, y, z):  # noqa: N802 - a point of the left hip bone, mirrored for the right
            return tuple(m * np.array([x, y, z], float))

        hip = np.array([92.0 * s, -66.0 * h, -100.0 * h])
        cup = np.array([sx * 0.6, -0.45, -0.66])  # the way the acetabulum opens: out, forward and down
        # Iliac blade: horizontal sections stacked from the acetabulum up to the crest, each a thin vertical plate
        # bowed outwards from the sacroiliac joint to the front of the blade (the iliac fossa is concave inwards).
        parts = []
        rows = _BLADE_ROWS
        for k, (z, x_post, y_post, x_ant, y_ant, bow) in enumerate(rows):
            post = np.array([x_si + x_post * s, y_post * h, z * h])
            ant = np.array([x_ant * s, y_ant * h, z * h])
            ctrl = np.array([ant[0] + bow * s, 0.5 * (post[1] + ant[1]) + 12.0 * h, z * h])
            curve = [(1 - t) ** 2 * post + 2 * t * (1 - t) * ctrl + t * t * ant for t in np.linspace(0.0, 1.0, 7)]
            half_gap = 0.5 * (rows[min(k + 1, len(rows) - 1)][0] - rows[max(k - 1, 0)][0]) * h / 2.0 + 1.0
            parts += [Capsule(P(*a_), P(*b_), 1.8 * h, (1.0, 1.0, half_gap / (1.8 * h)))
                      for a_, b_ in zip(curve[:-1], curve[1:])]
            if k == len(rows) - 1:
                crest = curve
        parts += [Capsule(P(*a_), P(*b_), 5.0 * h, (1.0, 1.0, 1.3)) for a_, b_ in zip(crest[:-1], crest[1:])]
        # Posterior ilium: thick bone along the sacroiliac joint, a joint space off the sacrum's S1-S3 lateral surface.
        joint = [rot.T @ (seg.centre + seg.rot @ np.array([sx * (sacrum_half_width(subject, k) + JOINT_GAP + 10.0 * h),
                                                            0.3 * seg.ra, 0.0]) - s1.centre)
                 for k, seg in enumerate(subject.sacrum[:3])]
        joint = [tuple(joint[0] + [0.0, 12.0 * h, 26.0 * h])] + [tuple(j) for j in joint]
        parts += [Capsule(a, b, 10.0 * h, (1.0, 1.4, 1.0)) for a, b in zip(joint[:-1], joint[1:])]
        parts += [
            Capsule(joint[0], P(*crest[1]), 7.0 * h),
            Capsule(joint[-1], P(hip[0] - 6.0 * s, hip[1] + 22.0 * h, hip[2] + 28.0 * h), 10.0 * h),
            # The body of the ilium above the cup, the anterior inferior spine in front of it.
            Ellipsoid(P(hip[0] - 2.0 * s, hip[1] + 10.0 * h, hip[2] + 34.0 * h), (17.0 * h, 24.0 * h, 22.0 * h)),
            Capsule(P(*crest[-1]), P(hip[0] + 4.0 * s, hip[1] - 16.0 * h, hip[2] + 34.0 * h), 6.0 * h),
            # Acetabular cup: a spherical shell open laterally, anteriorly and below.
            EllipsoidShell(P(*hip), (29.0 * h, 29.0 * h, 29.0 * h), 6.5 * h,
                           planes=((cup, float(cup @ (m * hip)) + 4.0 * h),),
                           box=(hip * m - 30.0 * h, hip * m + 30.0 * h)),
            # Ischium down and back to its tuberosity; both pubic rami to the symphysis.
            Capsule(P(hip[0] - 6.0 * s, hip[1] + 18.0 * h, hip[2] - 14.0 * h), P(58.0 * s, -32.0 * h, -160.0 * h),
                    10.0 * h),
            Capsule(P(hip[0] - 10.0 * s, hip[1] - 18.0 * h, hip[2] + 4.0 * h), P(9.0 * s, -122.0 * h, -122.0 * h),
                    8.0 * h),
            Capsule(P(9.0 * s, -120.0 * h, -140.0 * h), P(56.0 * s, -40.0 * h, -162.0 * h), 6.0 * h, (1.0, 1.0, 1.4)),
            Ellipsoid(P(9.0 * s, -122.0 * h, -130.0 * h), (6.0 * h, 9.0 * h, 18.0 * h)),
        ]
        out.append(Solid(f"hip_bone_{side}", s1.centre, rot, tuple(parts), mat))
        r_head = 23.0 * h
        neck = hip + np.array([28.0 * s, 4.0 * h, -24.0 * h])
        femur = [Ellipsoid(P(*hip), (r_head - JOINT_GAP,) * 3), Capsule(P(*hip), P(*neck), 14.0 * h),
                 Ellipsoid(P(*(neck + [6.0 * s, 8.0 * h, 6.0 * h])), (13.0 * h, 18.0 * h, 22.0 * h)),
                 Capsule(P(*neck), P(*(neck + [-8.0 * s, 4.0 * h, -280.0 * h])), 14.0 * h)]
        out.append(Solid(f"femur_{side}", s1.centre, rot, tuple(femur), mat))
    return out
