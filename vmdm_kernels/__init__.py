"""Fused loss kernels for 2D-supervised motion diffusion (placeholder until ops land)."""
