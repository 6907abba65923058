"""The denoiser (:mod:`.denoiser`), the Gaussian diffusion it is trained in (:mod:`.diffusion`)
and the text encoders that condition it (:mod:`.text`)."""

from vmdm.model.denoiser import PRESETS, MotionDenoiser
from vmdm.model.diffusion import Diffusion

__all__ = ["PRESETS", "MotionDenoiser", "Diffusion"]
