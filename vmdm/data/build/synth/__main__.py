"""Command line: ``python -m vmdm.data.build.synth --out DIR [--num-clips N] [--seed S]``."""

import sys
import time

from vmdm.cli import build_parser, from_args
from vmdm.data.build.synth.corpus import SynthConfig, synthesize


def main(argv=None) -> int:
    parser = build_parser(SynthConfig, "python -m vmdm.data.build.synth", "Generate the built-in corpus: "
                          "procedural, text-labelled SMPL-22 motions in HumanML3D format.")
    cfg = from_args(SynthConfig, parser.parse_args(argv))
    t0 = time.time()
    out = synthesize(cfg)
    print(f"wrote {cfg.num_clips} clips to {out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
