"""``python -m vmdm.eval --checkpoint CKPT [--evaluator EV] [--quick]`` (see :mod:`vmdm.eval.run`);
``python -m vmdm.eval prompts --checkpoint CKPT`` runs the prompt-following benchmark
(see :mod:`vmdm.eval.prompts`); ``python -m vmdm.eval --lift-benchmark --checkpoint CKPT --out DIR`` the
lifting benchmark (see :mod:`vmdm.eval.lift_benchmark`)."""

import sys

if sys.argv[1:2] == ["prompts"]:
    from vmdm.eval.prompts import main as prompts_main

    sys.exit(prompts_main(sys.argv[2:]))

if "--lift-benchmark" in sys.argv[1:]:
    from vmdm.eval.lift_benchmark import main as benchmark_main

    sys.exit(benchmark_main([a for a in sys.argv[1:] if a != "--lift-benchmark"]))

from vmdm.eval.run import main  # noqa: E402

sys.exit(main())
