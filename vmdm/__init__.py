"""vmdm: VideoMDM, text-to-motion diffusion learned from 2D supervision."""

__version__ = "0.1.0"
