"""Command line: ``python -m vmdm.data.build.synth --out DIR [--num-clips N] [--seed S]``."""

import argparse
import sys
import time

from vmdm.data.build.synth.corpus import DEFAULT_NUM_CLIPS, generate_corpus


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmdm.data.build.synth", description=__doc__)
    ap.add_argument("--out", required=True, help="output directory (HumanML3D format)")
    ap.add_argument("--num-clips", type=int, default=DEFAULT_NUM_CLIPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = generate_corpus(args.out, args.num_clips, args.seed, args.workers, progress=not args.no_progress)
    print(f"wrote {args.num_clips} clips to {out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
