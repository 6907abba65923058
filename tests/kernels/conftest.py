"""The ``backend`` fixture of the kernel tests: one test, every compiled backend.

``backend`` is parametrised over ``cpp``, ``cuda`` and ``triton`` (ids ``[cpp]``, ...)
and skips, with the reason :func:`vmdm_kernels.backends` gives, where a backend cannot
run. Triton runs compiled on a CUDA device, else under the interpreter on CPU
(``TRITON_INTERPRET=1``, chosen in ``tests/conftest.py`` before anything imports triton).
A test that applies to some backends only narrows the fixture with :func:`only`; the
shapes a test uses may differ per backend (:meth:`Backend.pick`), since every program
instance costs milliseconds in the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import vmdm_kernels as vk

COMPILED = ("cpp", "cuda", "triton")


@dataclass(frozen=True)
class Backend:
    name: str
    device: str  # where its tensors live

    @property
    def kernels(self):
        """The kernel entry points (``<op>_fwd`` / ``<op>_bwd``): ``torch.ops.vmdm_C`` or
        :mod:`vmdm_kernels.triton`."""
        from vmdm_kernels.dispatch import kernel_module

        return kernel_module(self.name)

    @property
    def interpreted(self) -> bool:
        return self.name == "triton" and self.device == "cpu"

    def pick(self, *, cuda, triton):
        """A per-backend choice: the C++ CPU kernels take the CUDA kernels' sizes."""
        return triton if self.name == "triton" else cuda

    def to(self, p: dict, dtype=None) -> dict:
        """A problem's tensors on this backend's device (and in ``dtype``)."""
        return {k: (None if v is None else v.to(device=self.device, dtype=dtype or v.dtype)) for k, v in p.items()}

    def __str__(self) -> str:
        return self.name


def _backend(name: str) -> Backend:
    info = vk.backends()[name]
    if not info.available:
        pytest.skip(str(info))
    if name == "triton":
        import vmdm_kernels.triton as vt

        if not torch.cuda.is_available() and not vt.INTERPRET:
            pytest.skip("no CUDA device, and vmdm_kernels.triton was imported without TRITON_INTERPRET=1 "
                        "(set it before triton is first imported to interpret the kernels on CPU)")
    return Backend(name, info.devices[0])


@pytest.fixture(params=COMPILED)
def backend(request) -> Backend:
    return _backend(request.param)


def only(*names: str):
    """Runs a test for these backends only (``"reference"`` too: the pure-PyTorch ops)."""
    return pytest.mark.parametrize("backend", names, indirect=True)


def cases(table: dict):
    """``pytest.mark.parametrize`` over per-backend case lists: ``{"cpp": [...], ...}`` where
    each case is a tuple of the test's other arguments."""
    return [pytest.param(name, *case, id="-".join([name] + [_id(v) for v in case]))
            for name, rows in table.items() for case in rows]


def _id(v) -> str:
    if isinstance(v, tuple) and len(v) == 3 and all(isinstance(x, int) for x in v):
        return "B{}T{}J{}".format(*v)
    return str(v)
