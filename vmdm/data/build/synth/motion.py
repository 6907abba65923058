"""Motion primitives: neutral stance, easing, smooth noise, the footstep planner.

Actions are authored in a local frame (start at the origin facing +z, the
body's left on +x) and moved into the world by :func:`place`. Every action
starts and ends in the neutral stance so actions can be chained.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from vmdm.data.build.synth.body import SIDE_SIGN, Pose, Subject, mv, ry

FPS = 20.0


# --------------------------------------------------------------------------- curves


def smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (u * (6 * u - 15) + 10)


def window(T: int, a: float, b: float, ramp: float) -> np.ndarray:
    """0 -> 1 over ``[a, a+ramp]``, 1 until ``b-ramp``, -> 0 at ``b`` (frames)."""
    t = np.arange(T, dtype=np.float64)
    ramp = max(ramp, 1e-6)
    return smoothstep((t - a) / ramp) * smoothstep((b - t) / ramp)


def smooth_noise(rng: np.random.Generator, T: int, dims: int, sigma_frames: float, amp: float) -> np.ndarray:
    """Low-frequency noise ``[T, dims]`` with std about ``amp``."""
    raw = rng.standard_normal((T + 40, dims))
    sm = gaussian_filter1d(raw, sigma_frames, axis=0, mode="wrap")[20 : 20 + T]
    sd = sm.std() + 1e-9
    return sm / sd * amp


def rep_phase(T: int, a: float, b: float, reps: int) -> np.ndarray:
    """Phase in ``[0, reps]`` rising linearly over frames ``[a, b]``, clamped."""
    t = np.arange(T, dtype=np.float64)
    return np.clip((t - a) / max(b - a, 1e-6), 0.0, 1.0) * reps


# --------------------------------------------------------------------------- neutral


def arm_hang(subj: Subject, side: int) -> np.ndarray:
    la, lb = subj.arm
    return np.array([SIDE_SIGN[side] * 0.06 * subj.scale, -0.965 * (la + lb), 0.03 * subj.scale])


ELBOW_BACK = (np.array([0.35, -0.2, -1.0]), np.array([-0.35, -0.2, -1.0]))


def stance_half_width(subj: Subject) -> float:
    return 0.5 * subj.hip_width + 0.025 * subj.scale


def neutral(subj: Subject, T: int, knee_bend: float = 0.985) -> Pose:
    """Standing still at the origin facing +z (local frame)."""
    w = stance_half_width(subj)
    ankle = np.zeros((2, T, 3))
    for s in range(2):
        ankle[s, :, 0] = SIDE_SIGN[s] * w
        ankle[s, :, 1] = subj.ankle_height
    return Pose(
        pelvis=np.tile([0.0, subj.hip_height * knee_bend, 0.0], (T, 1)),
        heading=np.zeros(T),
        pelvis_tilt=np.zeros((T, 3)),
        spine=np.zeros((T, 3)),
        neck=np.zeros((T, 3)),
        collar=np.zeros((T, 2)),
        wrist=np.stack([np.tile(arm_hang(subj, s), (T, 1)) for s in range(2)]),
        elbow_pole=np.stack([np.tile(ELBOW_BACK[s], (T, 1)) for s in range(2)]),
        ankle=ankle,
        foot_yaw=np.stack([np.full(T, 0.08), np.full(T, -0.08)]),
        foot_pitch=np.zeros((2, T)),
    )


def add_idle_noise(pose: Pose, rng: np.random.Generator, amount: float = 1.0) -> None:
    """Small natural sway and arm drift that never moves the planted feet."""
    T = pose.T
    pose.spine += smooth_noise(rng, T, 3, 8.0, 0.02 * amount)
    pose.neck += smooth_noise(rng, T, 3, 6.0, 0.04 * amount)
    pose.pelvis[:, [0, 2]] += smooth_noise(rng, T, 2, 10.0, 0.006 * amount)
    pose.pelvis_tilt += smooth_noise(rng, T, 3, 10.0, 0.01 * amount)
    pose.wrist += np.stack([smooth_noise(rng, T, 3, 6.0, 0.012 * amount) for _ in range(2)])


# --------------------------------------------------------------------------- placement


def place(pose: Pose, x: float, z: float, heading: float) -> Pose:
    """Move a local-frame pose so that its origin is at ``(x, z)`` facing ``heading``."""
    out = pose.copy()
    R = ry(np.float64(heading))
    shift = np.array([x, 0.0, z])
    out.pelvis = mv(R, pose.pelvis) + shift
    out.ankle = mv(R, pose.ankle) + shift
    out.heading = pose.heading + heading
    out.foot_yaw = pose.foot_yaw + heading
    if pose.wrist_world is not None:
        out.wrist_world = mv(R, pose.wrist_world) + shift
    return out


def end_state(pose: Pose) -> tuple[float, float, float]:
    return float(pose.pelvis[-1, 0]), float(pose.pelvis[-1, 2]), float(pose.heading[-1])


# --------------------------------------------------------------------------- locomotion


def integrate_path(velocity: np.ndarray) -> np.ndarray:
    """World xz positions ``[T, 2]`` from per-frame velocities (m/frame), starting at 0."""
    return np.concatenate([np.zeros((1, 2)), np.cumsum(velocity[:-1], axis=0)], axis=0)


def plan_steps(
    subj: Subject,
    path: np.ndarray,
    heading: np.ndarray,
    windows: list[tuple[int, int]],
    cycle: float,
    duty: float,
    clearance: float,
    width: float | None = None,
    first_foot: int = 0,
    pitch_amp: float = 0.35,
    knee_lift: float = 0.0,
):
    """Footsteps for a pelvis path; returns ankle targets ``[2, T, 3]``, foot
    yaws/pitches ``[2, T]`` and the per-frame swing indicator ``[2, T]``.

    Within each active window ``(a, b)`` feet alternate; a swing lasts
    ``(1 - duty) * cycle`` frames and steps start every ``cycle / 2`` frames,
    stretched so the last swing ends exactly at ``b``. A footprint lies under
    the pelvis (plus the stance half-width across the heading) at the middle
    of the stance it begins, clamped to the window, so each window starts and
    ends with both feet in a neutral stance. Outside swings the feet do not
    move at all.
    """
    T = path.shape[0]
    w = stance_half_width(subj) if width is None else width
    toe_out = (0.08, -0.08)

    def footprint(side, t):
        t = int(round(np.clip(t, 0, T - 1)))
        h = heading[t]
        p = np.array([path[t, 0], 0.0, path[t, 1]]) + mv(ry(np.float64(h)), np.array([SIDE_SIGN[side] * w, 0, 0]))
        p[1] = subj.ankle_height
        return p, h + toe_out[side]

    ankle = np.zeros((2, T, 3))
    yaw = np.zeros((2, T))
    pitch = np.zeros((2, T))
    swing_mask = np.zeros((2, T))
    # Each foot: list of (time, footprint, yaw) keyframes where it lands.
    events: list[list] = [[], []]
    swings: list[list] = [[], []]
    start_p = [footprint(s, windows[0][0] if windows else 0) for s in range(2)]
    for s in range(2):
        events[s].append((0, *start_p[s]))
    foot = first_foot
    for a, b in windows:
        sw = (1 - duty) * cycle
        n = max(2, int(round((b - a - sw) / (cycle / 2))) + 1)
        step = (b - a - sw) / (n - 1)
        sw = min(sw, 1.6 * step) if n > 1 else sw
        for k in range(n):
            t0 = a + k * step
            t1 = t0 + sw
            mid = t1 + (2 * step - sw) / 2
            mid = min(mid, b)
            p, h = footprint(foot, mid)
            swings[foot].append((t0, t1))
            events[foot].append((t1, p, h))
            foot = 1 - foot
        # Make sure both feet end the window under the final pose.
        for s in range(2):
            p, h = footprint(s, b)
            if np.linalg.norm(events[s][-1][1] - p) > 1e-6 or abs(events[s][-1][2] - h) > 1e-6:
                t0 = b - sw * 0.9
                t0 = max(t0, events[s][-1][0] + 1)
                swings[s].append((t0, t0 + sw * 0.9))
                events[s].append((t0 + sw * 0.9, p, h))
    t = np.arange(T, dtype=np.float64)
    for s in range(2):
        ev = events[s]
        # Hold the first footprint, then after each swing the next one.
        ankle[s] = ev[0][1]
        yaw[s] = ev[0][2]
        for (t0, t1), (_, p_new, h_new), (_, p_old, h_old) in zip(swings[s], ev[1:], ev[:-1]):
            u = np.clip((t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)
            e = smoothstep(u)
            active = (t >= t0) & (t <= t1)
            after = t > t1
            lift = clearance * np.sin(np.pi * u)
            pos = p_old[None] + e[:, None] * (p_new - p_old)[None]
            pos[:, 1] += lift
            # Toes up through the swing, so the sole leaves and meets the floor
            # while the foot is barely moving horizontally (no toe scuffing).
            pitch_u = -pitch_amp * np.sin(np.pi * u) * (1 if clearance > 0.02 else 0)
            ankle[s][active] = pos[active]
            yaw[s][active] = (h_old + e * _angle_diff(h_new, h_old))[active]
            pitch[s][active] = pitch_u[active]
            swing_mask[s][active] = 1.0
            ankle[s][after] = p_new
            yaw[s][after] = h_new
            if knee_lift > 0:
                # Drawn up towards the body mid-swing (march, run): raise and pull back.
                ankle[s][active, 1] += (knee_lift * np.sin(np.pi * u))[active]
    return ankle, yaw, pitch, swing_mask


def _angle_diff(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def ground_feet(pose: Pose, subj: Subject) -> None:
    """Raise ankle targets (in place) wherever the toe would go below the floor."""
    from vmdm.data.build.synth.body import rx

    for s in range(2):
        off = subj.offsets[10 if s == 0 else 11]
        rot = ry(pose.foot_yaw[s]) @ rx(pose.foot_pitch[s])
        toe_y = pose.ankle[s][:, 1] + mv(rot, off)[:, 1]
        pose.ankle[s][:, 1] += np.maximum(0.0, -toe_y)
        pose.ankle[s][:, 1] = np.maximum(pose.ankle[s][:, 1], 0.04 * subj.scale)


def relative_to_pelvis(pose: Pose, points: np.ndarray) -> np.ndarray:
    """World points ``[T, 3]`` in the heading frame of the pelvis."""
    return mv(ry(-pose.heading), points - pose.pelvis)
