"""``torch.library.triton_op`` registrations of the Triton kernels, for ``torch.compile``.

``vmdm_kernels.ops`` registers opaque ``custom_op`` s (``vmdm::<op>_fwd/_bwd``) that call
whichever backend was chosen; Inductor cannot look inside those. The ops here,
``torch.ops.vmdm_triton.<op>_fwd/_bwd``, launch the same kernels through
``torch.library.wrap_triton`` so Inductor sees the Triton kernels themselves (and
can schedule them with the surrounding graph, CUDA-graph them, and so on).

Nothing is registered at import: :func:`register` does it (once), and the ops call it
the first time they run with the Triton backend on CUDA tensors. Each op's schema and
autograd formula come from its declaration in ``vmdm_kernels.ops.<op>``
(:class:`vmdm_kernels.ops._registry.FusedOp`), the same one the ``vmdm::`` ops and the
eager path use, so the ops are interchangeable with ``torch.ops.vmdm_C``. They are meant
for CUDA tensors; under the Triton interpreter they also run eagerly on CPU (useful for
tests), but ``torch.compile`` over them does not work there.
"""

from __future__ import annotations

import threading

__all__ = ["NAMESPACE", "register"]

NAMESPACE = "vmdm_triton"
_registered = False
_lock = threading.Lock()


def register() -> None:
    """Registers ``torch.ops.vmdm_triton.*`` (idempotent)."""
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from .. import triton as kernels
        from ..ops import FUSED_OPS

        for op in FUSED_OPS:
            if op.triton_library:
                op.register_triton(NAMESPACE, kernels)
        _registered = True
