"""vmdm: VideoMDM, text-to-motion diffusion learned from 2D supervision."""

import os

# OpenMP threads that spin while waiting make torch on a small CPU machine collapse as soon
# as another process wants a core (measured: docs/training.md). Sleeping waits cost little
# and avoid that. Only effective when set before torch is
# first imported, which is the case for `python -m vmdm.<cli>`; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
