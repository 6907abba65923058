"""Training objectives for the three supervision modes.

- ``3d`` (MDM): MSE on the features of the ground-truth motion, plus MDM's optional
  geometric losses on decoded joints (positions, finite-difference velocity through the
  fused kernel, foot contact).
- ``teacher`` (MDM on the lifter): the same, with the teacher lifts standing in for 3D data.
- ``2d`` (VideoMDM): the predicted x0 is decoded to joints and supervised only in 2D with
  the fused depth-weighted reprojection + velocity kernel, plus representation alignment:
  the predicted joints are projected onto the camera rays through the observed keypoints
  (fused kernel; the corrections smoothed over frames against keypoint noise), re-encoded to
  features without gradient, and the redundant channels
  (rotations, local velocities, foot contacts) of the prediction are pulled towards them.
  This objective never sees 3D ground truth: it refuses batches that carry any. With
  ``depth_offset`` each predicted clip is first shifted along its frame-0 root's camera ray
  to its best 2D fit (:mod:`vmdm.training.depth_offset`, no gradient through the solve).
"""

from __future__ import annotations

import torch

import vmdm_kernels as vk
from vmdm.motion.bones import bone_pairs
from vmdm.motion.representation import CanonicalTransform, Normalizer, canonicalize, channel_groups
from vmdm.motion.skeleton import Skeleton, feature_skeleton
from vmdm.motion.smoothing import smooth_corrections
from vmdm.training.config import LossConfig
from vmdm.training.depth_offset import shift_along_ray, solve_root_ray_offset

__all__ = ["LossConfig", "Objective", "GT_KEYS", "masked_mse"]

# Batch fields that hold 3D ground truth; the 2D objective must never receive them.
GT_KEYS = ("gt_joints", "gt_motion")


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over valid frames (``mask`` ``[B, F]``) and channels, per sample ``[B]``."""
    m = mask.to(pred.dtype)[..., None]
    se = ((pred - target) ** 2 * m).sum(dim=(1, 2))
    return se / (m.sum(dim=(1, 2)) * pred.shape[-1]).clamp_min(1)


def _masked_weights(batch: dict) -> torch.Tensor:
    """Keypoint confidences ``[B, F, J]`` with padded frames at 0."""
    return batch["weights"] * batch["mask"][..., None].to(batch["weights"].dtype)


class Objective:
    """Computes the loss terms of one supervision mode from a batch and the model's x0 prediction."""

    def __init__(self, supervision: str, cfg: LossConfig, skeleton: Skeleton, normalizer: Normalizer,
                 kernels: str = "fused"):
        if supervision not in ("3d", "teacher", "2d"):
            raise ValueError(f"supervision: expected '3d', 'teacher' or '2d', got {supervision!r}")
        if kernels not in ("fused", "reference"):
            raise ValueError(f"kernels: expected 'fused' or 'reference', got {kernels!r}")
        self.supervision = supervision
        self.cfg = cfg
        self.skeleton = skeleton
        self.backend = None if kernels == "fused" else "reference"
        self.groups = channel_groups(skeleton)
        self._features = feature_skeleton(skeleton)
        self._norm = normalizer
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bones: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _mean_std(self, like: torch.Tensor):
        key = like.device
        if key not in self._stats:
            self._stats[key] = (torch.as_tensor(self._norm.mean, dtype=torch.float32, device=key),
                                torch.as_tensor(self._norm.std, dtype=torch.float32, device=key))
        return self._stats[key]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._mean_std(x)
        return x * std + mean

    def joints(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Normalised features ``[B, F, D]`` -> joints ``[B, F, J, 3]`` in the clip's canonical frame."""
        mean, std = self._mean_std(x_norm)
        # Denormalisation fused into the decoder's forward and backward kernels.
        return vk.recover_from_ric(x_norm.float(), self.skeleton.num_joints, mean=mean, std=std,
                                   backend=self.backend)

    def __call__(self, pred: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Per-sample loss terms ``{name: [B]}`` and their weighted sum under ``"loss"``."""
        if self.supervision == "2d":
            return self._video(pred, batch)
        return self._motion(pred, batch)

    # ------------------------------------------------------------------ 3D-supervised (MDM)

    def _motion(self, pred, batch):
        c = self.cfg
        x0, mask = batch["motion"], batch["mask"]
        terms = {"feature": masked_mse(pred.float(), x0.float(), mask)}
        total = c.lambda_feature * terms["feature"]
        if c.lambda_geo_pos or c.lambda_geo_vel or c.lambda_geo_foot:
            pj, tj = self.joints(pred), self.joints(x0)
            w = mask.to(pj.dtype)[..., None].expand(pj.shape[:3])
            if c.lambda_geo_pos:
                terms["geo_pos"] = ((pj - tj) ** 2).sum(-1).mul(w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
                total = total + c.lambda_geo_pos * terms["geo_pos"]
            if c.lambda_geo_vel:
                terms["geo_vel"] = vk.velocity_loss_3d(pj, tj, w, reduction="none", backend=self.backend)
                total = total + c.lambda_geo_vel * terms["geo_vel"]
            if c.lambda_geo_foot:
                terms["geo_foot"] = self._foot_contact(pj, x0, mask)
                total = total + c.lambda_geo_foot * terms["geo_foot"]
        terms["loss"] = total
        return terms

    def _foot_contact(self, pred_joints, x0, mask):
        """MDM's foot-contact term: feet that the target marks as in contact should not move."""
        contact = self.denormalize(x0.float())[..., self.groups["contacts"]] > 0.5  # [B, F, nfeet]
        feet = list(self.skeleton.feet_left) + list(self.skeleton.feet_right)
        vel = pred_joints[:, 1:, feet] - pred_joints[:, :-1, feet]  # [B, F-1, nfeet, 3]
        m = (contact[:, :-1] & mask[:, 1:, None] & mask[:, :-1, None]).to(vel.dtype)
        return ((vel**2).sum(-1) * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1)

    # ------------------------------------------------------------------ 2D-supervised (VideoMDM)

    def _video(self, pred, batch):
        leaked = [k for k in GT_KEYS if k in batch]
        if leaked:
            raise RuntimeError(f"2D supervision received 3D ground truth in the batch ({leaked}); "
                               "build the dataset with mode='2d'")
        c = self.cfg
        joints = self.joints(pred)
        weights = _masked_weights(batch)
        kp, cam, intr = batch["keypoints"], batch["camera"], batch.get("intrinsics")
        offset = None
        if c.depth_offset:
            offset, ray = solve_root_ray_offset(joints, kp, cam, weights, intr, iterations=c.depth_offset,
                                                z_min=c.z_min)
            joints = shift_along_ray(joints, offset, ray)
        pos, vel = vk.reprojection_velocity_loss(
            joints, kp, cam, weights, intr, depth_weight=c.depth_weight, depth_power=c.depth_power, z_min=c.z_min,
            reduction="none", backend=self.backend,
        )
        terms = {"pos2d": pos, "vel2d": vel}
        if offset is not None:
            terms["root_offset"] = offset.detach().float()  # metres along the ray; logged, not a loss
        total = c.lambda_pos * pos + c.lambda_vel * vel
        if c.lambda_align:
            terms["align"] = self._alignment(pred, joints, batch, weights)
            total = total + c.lambda_align * terms["align"]
        if c.lambda_bone:
            terms["bone"] = self._bone_lengths(joints, batch)
            total = total + c.lambda_bone * terms["bone"]
        terms["loss"] = total
        return terms

    def _ray_joints(self, joints, batch, weights):
        """The joints moved onto the observed keypoints' rays, the moves smoothed over frames
        (:mod:`vmdm.motion.smoothing`, ``align_smooth``)."""
        joints = joints.float()
        rays = vk.ray_targets(joints, batch["keypoints"], batch["camera"], batch.get("intrinsics"),
                              backend=self.backend)
        # Undetected joints have no ray: keep the prediction there (or, when smoothing, take
        # the neighbouring frames' correction).
        return smooth_corrections(joints, rays, weights > 0, self.cfg.align_smooth, self.cfg.align_outlier)

    @torch.no_grad()
    def alignment_targets(self, joints, batch, weights):
        """Normalised features ``[B, F - 1, D]`` of the predicted joints moved onto the rays."""
        rays = self._ray_joints(joints, batch, weights)
        mean, std = self._mean_std(rays)
        # One fused pass: canonical frame, IK, velocities, contacts and normalisation.
        return vk.motion_features(rays, self._features, batch["lengths"], mean=mean, std=std, backend=self.backend)

    @torch.no_grad()
    def projected_features(self, x0_norm, batch):
        """A normalised prediction ``[B, F, D]`` with its joints moved onto the rays and
        re-encoded, every channel and frame (the multistep scheme's next input,
        :mod:`vmdm.training.multistep`), and the batch's camera in the frame those features
        decode to. Encoding re-canonicalises (the moved frame-0 root back to the xz origin,
        its heading to +z, the lowest joint to the floor): with the old camera the decoded
        joints would leave the rays again by that shift. Features of ``L`` frames need ``L +
        1`` joints: each clip's ray joints are extended linearly by one frame past its last
        valid one."""
        rays = self._ray_joints(self.joints(x0_norm), batch, _masked_weights(batch))  # [B, F, J, 3]
        B, F = rays.shape[:2]
        L = batch["lengths"].to(rays.device).long()
        last = (L - 1).clamp(min=1)
        b = torch.arange(B, device=rays.device)
        ext = torch.cat((rays, rays[:, -1:]), dim=1)
        ext[b, last + 1] = 2 * rays[b, last] - rays[b, last - 1]
        mean, std = self._mean_std(rays)
        feats = vk.motion_features(ext, self._features, last + 2, mean=mean, std=std, backend=self.backend)
        _, tf = canonicalize(ext, self.skeleton, last + 2)
        cam = batch["camera"]
        tf = CanonicalTransform(tf.rotation.to(cam.dtype), tf.translation.to(cam.dtype))
        R, t = tf.apply_camera(cam[..., :3], cam[..., 3])
        return feats[:, :F], torch.cat((R, t[..., None]), dim=-1)

    def _clip_bone_lengths(self, joints, mask):
        """Bone lengths averaged over each clip's valid frames, ``[B, J-1]``."""
        key = joints.device
        if key not in self._bones:
            self._bones[key] = tuple(i.to(key) for i in bone_pairs(self.skeleton.parents))
        child, par = self._bones[key]
        length = (joints[:, :, child] - joints[:, :, par]).norm(dim=-1)  # [B, F, J-1]
        m = mask.to(length.dtype)[..., None]
        return (length * m).sum(1) / m.sum(1).clamp_min(1)

    def _bone_lengths(self, joints, batch):
        """Relative squared error of the clip-average bone lengths against the teacher's.

        Reprojection fixes a bone's length only across the line of sight, and a denoiser
        that averages over the depths its input leaves open shortens the bones that point
        along it (the prediction's body ends up a few per cent smaller than its input).
        The teacher lift is the diffused input itself, so its bone lengths, averaged over
        the clip, give the size without any 3D ground truth.
        """
        mask = batch["mask"]
        with torch.no_grad():
            ref = self._clip_bone_lengths(self.joints(batch["motion"]), mask).clamp_min(1e-3)
        pred = self._clip_bone_lengths(joints, mask)
        return ((pred / ref - 1) ** 2).mean(-1)

    def _alignment(self, pred, joints, batch, weights):
        target = self.alignment_targets(joints.detach(), batch, weights)  # [B, F-1, D]
        red = self.groups["redundant"]
        F = target.shape[1]
        # The features have lengths-1 valid frames (velocities need the next frame).
        valid = torch.arange(F, device=pred.device)[None] < (batch["lengths"].to(pred.device) - 1)[:, None]
        return masked_mse(pred[:, :F, red].float(), target[..., red], valid)
