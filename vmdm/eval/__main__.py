"""``python -m vmdm.eval --checkpoint CKPT [--evaluator EV] [--quick]`` (see :mod:`vmdm.eval.run`)."""

import sys

from vmdm.eval.run import main

sys.exit(main())
