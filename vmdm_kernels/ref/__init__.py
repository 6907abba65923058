"""Pure-PyTorch reference implementations: the ground truth for every backend."""

from .camera import project
from . import motion_features, recover_from_ric
from .motion_features import FeatureSkeleton
from .ray_targets import ray_targets
from .reproj_vel import DEPTH_MODES, default_depth_power, reproj_vel_loss
from .velocity3d import velocity3d_loss

__all__ = ["DEPTH_MODES", "FeatureSkeleton", "default_depth_power", "motion_features", "project", "ray_targets", "reproj_vel_loss", "velocity3d_loss"]
