"""Building the training data: the procedural corpus (:mod:`.synth`), the teacher lifter and
its trainer (:mod:`.teacher`, :mod:`.train_teacher`), the 2D-only dataset (:mod:`.build_2d`),
the one-call default cache (:mod:`.prepare`) with its pinned numerics and fingerprints, and
corpus statistics (:mod:`.stats`)."""
