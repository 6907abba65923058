"""``python -m vmdm.eval --checkpoint CKPT [--evaluator EV] [--quick]`` (see :mod:`vmdm.eval.run`);
``python -m vmdm.eval prompts --checkpoint CKPT`` runs the prompt-following benchmark
(see :mod:`vmdm.eval.prompts`)."""

import sys

if sys.argv[1:2] == ["prompts"]:
    from vmdm.eval.prompts import main as prompts_main

    sys.exit(prompts_main(sys.argv[2:]))

from vmdm.eval.run import main  # noqa: E402

sys.exit(main())
