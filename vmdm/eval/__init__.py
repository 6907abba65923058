"""Evaluation: the text–motion evaluator, HumanML3D-protocol metrics, geometric and lifting
metrics, and the end-to-end evaluation run by ``python -m vmdm.eval``."""

from vmdm.eval.evaluator import Evaluator, EvaluatorConfig, load_evaluator, save_evaluator
from vmdm.eval.geometry import (
    accel_error_per_frame,
    floor_penetration,
    foot_skating_ratio,
    geometric_metrics,
    jitter,
    mpjpe_per_frame,
    pa_mpjpe_per_frame,
    procrustes_align,
    reprojection_error_per_frame,
)
from vmdm.eval.metrics import (
    diversity,
    euclidean_distance_matrix,
    fid,
    frechet_distance,
    matching_distance,
    mean_ci,
    mean_ci_t,
    multimodality,
    r_precision,
)

__all__ = [
    "Evaluator", "EvaluatorConfig", "load_evaluator", "save_evaluator",
    "accel_error_per_frame", "floor_penetration", "foot_skating_ratio", "geometric_metrics", "jitter",
    "mpjpe_per_frame", "pa_mpjpe_per_frame", "procrustes_align", "reprojection_error_per_frame",
    "diversity", "euclidean_distance_matrix", "fid", "frechet_distance", "matching_distance", "mean_ci", "mean_ci_t",
    "multimodality", "r_precision",
]
