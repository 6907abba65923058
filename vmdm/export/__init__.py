"""Exporting motion: BVH files, rendered videos and SMPL parameters."""
