"""Triton backend of vmdm_kernels: forward and hand-written backward kernels.

Exports the kernel entry points with the signatures and return conventions
of the compiled ops registered in ``csrc/bindings.cpp`` (``torch.ops.vmdm_C.*``),
so :func:`vmdm_kernels.dispatch.kernel_module` can hand this module to
``vmdm_kernels.ops`` in place of ``torch.ops.vmdm_C``.

Runs on CUDA tensors, or on CPU tensors under the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton is first imported). Design notes
(tiling, halos, deterministic reductions, launches per pass) are in
:mod:`vmdm_kernels.triton._common` and in each op's module.
:mod:`vmdm_kernels.triton.library` registers the same kernels as
``torch.library.triton_op`` s for ``torch.compile`` on GPU.
"""

from ._common import INTERPRET
from .ray_targets import ray_targets_bwd, ray_targets_fwd
from .recover_from_ric import recover_from_ric_bwd, recover_from_ric_fwd
from .reproj_vel import reproj_vel_bwd, reproj_vel_fwd
from .velocity3d import velocity3d_bwd, velocity3d_fwd

__all__ = [
    "INTERPRET",
    "ray_targets_bwd",
    "ray_targets_fwd",
    "recover_from_ric_bwd",
    "recover_from_ric_fwd",
    "reproj_vel_bwd",
    "reproj_vel_fwd",
    "velocity3d_bwd",
    "velocity3d_fwd",
]
