"""Readers of real motion data: HumanML3D folders, CMU ASF/AMC mocap and video keypoint folders."""
