"""Experiments built on training + evaluation: the paper's comparison (``compare``) and the
validation-split sweep used to choose ``lambda_align`` (``lambda_align``)."""
