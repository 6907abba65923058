"""Sample motions from a trained checkpoint, or lift a 2D keypoint clip to 3D:
``python -m vmdm.sample``.

The work is done by :mod:`vmdm.inference.sampling` (options: :class:`SampleConfig`); this
module is the command-line entry point.
"""

import sys

from vmdm.inference.sampling import SampleConfig, build_parser, main, sample

__all__ = ["SampleConfig", "build_parser", "main", "sample"]

if __name__ == "__main__":
    sys.exit(main())
