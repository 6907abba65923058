"""The built-in corpus: procedural, text-labelled SMPL-22 motions.

``python -m vmdm.data.build.synth --out DIR [--num-clips N] [--seed S] [--workers W]``
writes a HumanML3D-format directory (see ``vmdm.data.formats.humanml3d``) plus
``meta.jsonl`` and ``families.json``. Python API: :func:`generate_corpus` (or
:func:`synthesize` with the command line's :class:`SynthConfig`), :func:`generate_clip`,
:func:`family_groups`, :data:`FAMILIES`.
"""

from vmdm.data.build.synth.clip import generate_clip, make_captions, parse_plan
from vmdm.data.build.synth.corpus import SynthConfig, generate_corpus, plan_corpus, read_meta, split_plans, synthesize
from vmdm.data.build.synth.families import FAMILIES, family_groups

__all__ = [
    "FAMILIES",
    "family_groups",
    "generate_clip",
    "generate_corpus",
    "make_captions",
    "parse_plan",
    "plan_corpus",
    "read_meta",
    "split_plans",
    "SynthConfig",
    "synthesize",
]
