"""Placing canonical motions in a camera's world frame from 2D keypoints.

A lift's prediction lives in its own canonical frame (floor at 0, root at the xz origin at
frame 0, facing +z); the keypoints were seen by a camera in the world. :func:`fit_placement`
finds the rotation about the vertical and the translation that make a motion reproject
onto its keypoints, for a batch of motions at once: all against one clip's keypoints and
camera (several samples of one lift) or each against its own (a batch of clips, see
:func:`vmdm.inference.lifting.lift_batch`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vmdm.motion.cameras import project
from vmdm.motion.kinematics import rotation_about_y

__all__ = ["fit_placement", "apply_placement", "reprojection_error", "Z_MIN"]

# Yaw grid of the linear initialisation, Huber threshold (normalised image units, about
# 20 px at a 1000 px focal length) and the near-plane guard of the projection.
_YAW_GRID = 24
_HUBER = 0.02
Z_MIN = 0.1


def apply_placement(joints: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``rotation @ X + translation`` for joints ``[B, F, J, 3]``, ``rotation [B, 3, 3]``,
    ``translation [B, 3]``."""
    return (rotation[:, None, None] @ joints[..., None])[..., 0] + translation[:, None, None]


def _per_motion(uv: torch.Tensor, w: torch.Tensor, camera: torch.Tensor, B: int, F: int):
    """Keypoints ``[B, F, J, 2]``, weights ``[B, F, J]`` and the world camera as ``R [B, F, 3,
    3]``, ``t [B, F, 3]``, from one clip's (``uv [F, J, 2]``, camera ``[3, 4]`` or ``[F, 3,
    4]``) or per-motion inputs (``uv [B, F, J, 2]``, camera ``[B, 3, 4]`` or ``[B, F, 3, 4]``)."""
    batched = uv.dim() == 4
    if not batched:
        uv, w, camera = uv[None], w[None], camera[None]
    if camera.dim() == 3:  # one camera per motion, the same in every frame
        camera = camera[:, None]
    shape = (B, F)
    uv, w = uv.expand(shape + uv.shape[2:]), w.expand(shape + w.shape[2:])
    cam = camera.expand(shape + (3, 4))
    return uv, w, cam[..., :3], cam[..., 3]


def _project(Y, tau, R, t):
    """Camera-frame points and their projections of placed joints ``Y + tau`` (``Y [..., B,
    F, J, 3]``, ``tau [..., B, 3]``) through ``R [B, F, 3, 3]``, ``t [B, F, 3]``."""
    Xc = (R[:, :, None] @ (Y + tau[..., None, None, :])[..., None])[..., 0] + t[:, :, None]
    z = Xc[..., 2].clamp(min=Z_MIN)
    return Xc, z, Xc[..., :2] / z[..., None]


def _residuals(theta, tau, X, uv, w, R, t):
    """Weighted reprojection residuals ``[B, N, 2]`` and their Jacobian ``[B, N, 2, 4]`` with
    respect to ``(theta, tau)``. ``X [B, F, J, 3]`` canonical joints; ``uv [B, F, J, 2]``,
    ``w [B, F, J]``, ``R [B, F, 3, 3]``, ``t [B, F, 3]``."""
    Y = (rotation_about_y(theta)[:, None, None] @ X[..., None])[..., 0]  # [B, F, J, 3]
    Xc, z, proj = _project(Y, tau, R, t)
    r = proj - uv
    # d proj / d Xc = [[1/z, 0, -u/z], [0, 1/z, -v/z]]; points clamped at the near plane get
    # no depth gradient. d Xc / d tau = R, d Xc / d theta = R dY with dY = (Y_z, 0, -Y_x)
    # for a rotation about y, so d proj / d theta = (d proj / d tau) dY.
    inv_z = 1 / z
    front = (Xc[..., 2] > Z_MIN).to(X.dtype)
    Rj = R[:, :, None]  # [B, F, 1, 3, 3], shared by a frame's joints
    d_u = inv_z[..., None] * Rj[..., 0, :] - (proj[..., 0] * inv_z * front)[..., None] * Rj[..., 2, :]
    d_v = inv_z[..., None] * Rj[..., 1, :] - (proj[..., 1] * inv_z * front)[..., None] * Rj[..., 2, :]
    d_tau = torch.stack((d_u, d_v), dim=-2)  # [B, F, J, 2, 3]
    d_theta = d_tau[..., 0] * Y[..., 2, None] - d_tau[..., 2] * Y[..., 0, None]  # [B, F, J, 2]
    Jac = torch.cat((d_theta[..., None], d_tau), dim=-1)  # [B, F, J, 2, 4]
    B = X.shape[0]
    return r.reshape(B, -1, 2), Jac.reshape(B, -1, 2, 4), w.reshape(B, -1)


def _huber_cost(r, w):
    n = r.norm(dim=-1)
    rho = torch.where(n <= _HUBER, 0.5 * n**2, _HUBER * (n - 0.5 * _HUBER))
    return (w * rho).sum(-1)


def _init_placement(X, uv, w, R, t):
    """Best yaw on a grid, each with its translation from a linear (algebraic) least-squares
    fit of the projection equations ``u (R3 . (Y + tau) + t3) = R1 . (Y + tau) + t1``."""
    B = X.shape[0]
    thetas = torch.arange(_YAW_GRID, dtype=X.dtype) * (2 * math.pi / _YAW_GRID)
    Y = (rotation_about_y(thetas)[:, None, None, None] @ X[None, ..., None])[..., 0]  # [G, B, F, J, 3]
    Rj = R[:, :, None]  # [B, F, 1, 3, 3]
    a = (Rj[None] @ Y[..., None])[..., 0] + t[None, :, :, None]  # R Y + t  [G, B, F, J, 3]
    Rr = Rj.expand(uv.shape[:3] + (3, 3))  # [B, F, J, 3, 3]
    rows = torch.stack((Rr[..., 0, :] - uv[..., 0:1] * Rr[..., 2, :], Rr[..., 1, :] - uv[..., 1:2] * Rr[..., 2, :]),
                       dim=-2)  # [B, F, J, 2, 3]
    rhs = torch.stack((uv[..., 0] * a[..., 2] - a[..., 0], uv[..., 1] * a[..., 2] - a[..., 1]), dim=-1)
    ww = w[..., None, None]
    A = (rows.transpose(-1, -2) @ (ww * rows)).sum((1, 2))  # [B, 3, 3]
    b = ((rows * ww).transpose(-1, -2)[None] @ rhs[..., None]).sum((2, 3))[..., 0]  # [G, B, 3]
    tau = torch.linalg.solve(A[None] + 1e-9 * torch.eye(3, dtype=X.dtype), b[..., None])[..., 0]
    # Every yaw's robust cost at once (residuals only: no Jacobian is needed to rank them).
    _, _, proj = _project(Y, tau, R, t)
    cost = _huber_cost((proj - uv).reshape(_YAW_GRID, B, -1, 2), w.reshape(1, B, -1))  # [G, B]
    best = cost.argmin(0)
    return thetas[best], tau[best, torch.arange(B)]


def fit_placement(joints, keypoints, weights, camera, *, init=None, iterations: int = 15,
                  keep_depth: bool = False):
    """Place canonical joints in the camera's world frame.

    Finds ``rotation`` (about +y) and ``translation`` per motion so that ``rotation @ X +
    translation`` projects onto the keypoints: a yaw grid with linear translations, then
    Levenberg-Marquardt on the Huber-weighted reprojection error. ``joints [B, F, J, 3]``
    (or ``[F, J, 3]``). One clip for every motion: ``keypoints [F, J, 2]`` normalised image
    coordinates, ``weights [F, J]``, ``camera [3, 4]`` or ``[F, 3, 4]`` world; or a clip per
    motion: ``keypoints [B, F, J, 2]``, ``weights [B, F, J]``, ``camera [B, 3, 4]`` or ``[B,
    F, 3, 4]``. ``init``: ``(rotation, translation)`` to refine instead of the grid search.
    ``keep_depth`` (with ``init``): move the motion only across the camera's line of sight
    (its image x and y axes), not towards or away from it. Reprojection pins depth only
    through perspective, weakly, so a refit of a poor prediction can otherwise throw it
    metres away; the lifter sets depth from body size instead. Returns ``(rotation [B, 3,
    3], translation [B, 3])``.
    """
    X = torch.as_tensor(joints).double()
    single = X.dim() == 3
    if single:
        X = X[None]
    B, F = X.shape[:2]
    uv, w, R, t = _per_motion(torch.as_tensor(keypoints).double(), torch.as_tensor(weights).double(),
                              torch.as_tensor(camera).double(), B, F)
    if init is None:
        theta, tau = _init_placement(X, uv, w, R, t)
    else:
        rot0, tau = (torch.as_tensor(v).double() for v in init)
        if rot0.dim() == 2:
            rot0, tau = rot0[None], tau[None]
        theta = torch.atan2(rot0[:, 0, 2], rot0[:, 2, 2])
    if keep_depth and init is None:
        raise ValueError("keep_depth: needs an init placement to keep the depth of")
    # Directions the translation may move in: all, or each camera's image axes in the world.
    basis = (R[:, F // 2, :2].transpose(-1, -2) if keep_depth
             else torch.eye(3, dtype=X.dtype).expand(B, 3, 3))  # [B, 3, P - 1]
    P = basis.shape[-1] + 1

    def residuals(theta, tau):
        r, Jac, wr = _residuals(theta, tau, X, uv, w, R, t)
        return r, torch.cat((Jac[..., :1], Jac[..., 1:] @ basis[:, None]), dim=-1), wr

    lam = torch.full_like(theta, 1e-3)
    r, Jac, wr = residuals(theta, tau)
    cost = _huber_cost(r, wr)
    for _ in range(iterations):
        n = r.norm(dim=-1)
        hub = torch.where(n <= _HUBER, torch.ones_like(n), _HUBER / n.clamp(min=1e-12))
        W = (wr * hub)[..., None]  # [B, N, 1]
        WJ = W[..., None] * Jac
        H = torch.einsum("bnki,bnkj->bij", WJ, Jac)  # [B, P, P]
        g = torch.einsum("bnki,bnk->bi", WJ, r)  # [B, P]
        damp = lam[:, None, None] * (torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1)) + 1e-9 * torch.eye(P))
        step = torch.linalg.solve(H + damp, -g[..., None])[..., 0]
        theta_n, tau_n = theta + step[:, 0], tau + (basis @ step[:, 1:, None])[..., 0]
        r_n, Jac_n, _ = residuals(theta_n, tau_n)
        cost_n = _huber_cost(r_n, wr)
        ok = cost_n < cost
        theta = torch.where(ok, theta_n, theta)
        tau = torch.where(ok[:, None], tau_n, tau)
        r = torch.where(ok[:, None, None], r_n, r)
        Jac = torch.where(ok[:, None, None, None], Jac_n, Jac)
        cost = torch.where(ok, cost_n, cost)
        lam = torch.where(ok, (lam / 3).clamp(min=1e-7), lam * 10)
        if bool((step.abs().max(-1).values < 1e-9).all()):
            break
    rot = rotation_about_y(theta)
    return (rot[0], tau[0]) if single else (rot, tau)


def reprojection_error(joints, keypoints, weights, camera, intrinsics=None) -> float:
    """Confidence-weighted mean 2D distance between projected ``joints [F, J, 3]`` (world)
    and ``keypoints [F, J, 2]``, in the keypoints' units (pixels with ``intrinsics``,
    otherwise normalised image coordinates)."""
    X = torch.as_tensor(np.asarray(joints, dtype=np.float64) if not isinstance(joints, torch.Tensor) else joints)
    X = X.double()
    cam = torch.as_tensor(np.asarray(camera, dtype=np.float64) if not isinstance(camera, torch.Tensor)
                          else camera).double()
    K = None if intrinsics is None else torch.as_tensor(np.asarray(intrinsics, dtype=np.float64))
    uv, _ = project(X, cam, K)
    kp = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    return float((w * (uv - kp).norm(dim=-1)).sum() / w.sum().clamp(min=1e-12))
