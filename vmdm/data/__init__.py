"""Motion data for training and evaluation.

:mod:`vmdm.data.dataset` serves every training regime from one class; real file formats
(HumanML3D folders, CMU ASF/AMC, video keypoint folders) are read by
:mod:`vmdm.data.formats`; :mod:`vmdm.data.build` makes the built-in corpus, the teacher
lifter and the 2D-only dataset. Geometry (skeletons, kinematics, the HumanML3D
representation, cameras) lives in :mod:`vmdm.motion`.
"""

from vmdm.data.dataset import MotionDataset, collate

__all__ = ["MotionDataset", "collate"]
