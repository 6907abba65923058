"""Train a motion diffusion model: ``python -m vmdm.train``.

The training loop, its configuration and recipes live in :mod:`vmdm.training`; this module
is the command-line entry point.
"""

import sys

from vmdm.training.trainer import TrainConfig, main, train

__all__ = ["TrainConfig", "main", "train"]

if __name__ == "__main__":
    sys.exit(main())
