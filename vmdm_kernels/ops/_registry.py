"""One declaration per fused op, from which every autograd path is built.

Each op module (``ops/<op>.py``) describes its kernels once with a :class:`FusedOp` subclass:
the name (the backends expose ``<name>_fwd`` / ``<name>_bwd``), the schemas (those of
``csrc/bindings.cpp``), the fake (meta) implementations, which tensors the backward
needs, and how the backward kernel's outputs map to input gradients. From that one
declaration this module builds

- the dispatcher ops ``vmdm::<name>_fwd`` / ``vmdm::<name>_bwd`` (``torch.library.custom_op``
  with a trailing ``str backend`` argument, ``register_fake`` and ``register_autograd``),
  which ``torch.compile(fullgraph=True)`` traces as opaque calls;
- an eager ``torch.autograd.Function`` that calls the chosen backend's kernels directly
  (outside ``torch.compile`` the custom-op machinery would cost more per call than the
  kernels themselves at training sizes);
- on request, the ``torch.library.triton_op`` pair ``vmdm_triton::<name>_fwd/_bwd``
  (:meth:`FusedOp.register_triton`, called by :mod:`vmdm_kernels.triton.library`), so
  that Inductor sees the Triton kernels themselves.

All three share :meth:`FusedOp._setup` and :meth:`FusedOp._backward`, so the backward
wiring of an op exists once (gsplat and Liger keep one ``autograd.Function`` per op for
the same reason).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..dispatch import kernel_module

__all__ = ["FusedOp", "acc_dtype", "empty", "fake_grads"]


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the kernels: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty(like: Tensor) -> Tensor:
    """What a backward kernel returns for a gradient that was not asked for."""
    return like.new_empty((0,))


def fake_grads(first: Tensor, *optional: tuple[Optional[Tensor], bool]) -> tuple:
    """Fake gradients of a backward kernel: ``first`` 's, then for each ``(input, needed)``
    the input's shape when needed, else an empty tensor."""
    return (torch.empty_like(first),) + tuple(torch.empty_like(t) if need else empty(first) for t, need in optional)


def _with_backend(schema: str) -> str:
    """``(a, b) -> R`` as ``(a, b, str backend) -> R``: the ``vmdm::`` ops carry the backend name."""
    args, ret = schema.split(" -> ")
    return f"{args[:-1]}, str backend) -> {ret}"


@torch.compiler.assume_constant_result
def _register_triton_library() -> bool:
    """Registers ``torch.ops.vmdm_triton.*`` (once). Runs eagerly even inside a trace (its
    result is a constant), so the ``triton_op`` s exist before Dynamo looks them up."""
    from ..triton.library import register

    register()
    return True


def _as_tuple(output) -> tuple:
    return output if isinstance(output, tuple) else (output,)


class FusedOp:
    """A fused op's kernels and autograd formula, declared once by a subclass.

    Class attributes:
        name: kernels are ``<name>_fwd`` / ``<name>_bwd`` on every backend module
            (``torch.ops.vmdm_C``, :mod:`vmdm_kernels.triton`).
        fwd_schema, bwd_schema: the kernels' schemas without the op name, as in
            ``csrc/bindings.cpp``, e.g. ``"(Tensor joints, Tensor target) -> Tensor"``.
            ``bwd_schema = None`` declares a forward-only op (no autograd).
        non_differentiable: indices of outputs that carry no gradient (e.g. statistics
            the backward reuses).
        triton_library: the op also has ``vmdm_triton::`` ``triton_op`` s (registered
            lazily, on its first call with the Triton backend on CUDA tensors).

    Static methods (the kernels' arguments, without ``backend``):
        fake_fwd, fake_bwd: meta implementations.
        save: ``(inputs, outputs) -> (tensors, opts)``: what the backward needs; tensors
            go through ``ctx.save_for_backward``, ``opts`` (plain values) onto ``ctx``.
            By default every input is saved.
        grads: ``(bwd, saved, opts, needs_input_grad, *grad_outputs) -> tuple`` of
            gradients for the leading forward inputs (the rest are None), where ``bwd``
            calls the backward kernel with the kernel's arguments.

    Instantiate a subclass once (at import of its module) to register it.
    """

    name: str
    fwd_schema: str
    bwd_schema: Optional[str] = None
    non_differentiable: Sequence[int] = ()
    triton_library: bool = False

    @staticmethod
    def fake_fwd(*inputs):
        raise NotImplementedError

    @staticmethod
    def fake_bwd(*inputs):
        raise NotImplementedError

    @staticmethod
    def save(inputs: tuple, outputs: tuple) -> tuple[tuple, tuple]:
        return tuple(inputs), ()

    @staticmethod
    def grads(bwd: Callable, saved: tuple, opts: tuple, need: tuple, *grad_outputs) -> tuple:
        raise NotImplementedError

    def __init__(self):
        fwd_name, bwd_name = f"{self.name}_fwd", f"{self.name}_bwd"
        fake_fwd = self.fake_fwd
        self.fwd_op = torch.library.custom_op(
            f"vmdm::{fwd_name}", lambda *a: getattr(kernel_module(a[-1]), fwd_name)(*a[:-1]),
            mutates_args=(), schema=_with_backend(self.fwd_schema),
        )
        self.fwd_op.register_fake(lambda *a: fake_fwd(*a[:-1]))
        self.bwd_op = None
        self.function = None
        self.triton_ops = None
        if self.bwd_schema is None:
            return
        fake_bwd = self.fake_bwd
        self.bwd_op = torch.library.custom_op(
            f"vmdm::{bwd_name}", lambda *a: getattr(kernel_module(a[-1]), bwd_name)(*a[:-1]),
            mutates_args=(), schema=_with_backend(self.bwd_schema),
        )
        self.bwd_op.register_fake(lambda *a: fake_bwd(*a[:-1]))
        bwd_op = self.bwd_op

        def setup(ctx, inputs, output):
            ctx.backend = inputs[-1]
            self._setup(ctx, inputs[:-1], output)

        def backward(ctx, *grad_outputs):
            return self._backward(lambda *a: bwd_op(*a, ctx.backend), ctx, grad_outputs)

        self.fwd_op.register_autograd(backward, setup_context=setup)
        self.function = self._eager_function()

    # ------------------------------------------------------------------ shared autograd wiring

    def _setup(self, ctx, inputs: tuple, output) -> None:
        outputs = _as_tuple(output)
        tensors, ctx.opts = self.save(inputs, outputs)
        ctx.save_for_backward(*tensors)
        if self.non_differentiable:
            ctx.mark_non_differentiable(*(outputs[i] for i in self.non_differentiable))

    def _backward(self, bwd: Callable, ctx, grad_outputs: tuple) -> tuple:
        need = ctx.needs_input_grad
        grads = tuple(self.grads(bwd, ctx.saved_tensors, ctx.opts, need, *grad_outputs))
        return grads + (None,) * (len(need) - len(grads))

    def _eager_function(self) -> type:
        op, fwd_name, bwd_name = self, f"{self.name}_fwd", f"{self.name}_bwd"

        def forward(ctx, *args):
            *inputs, backend = args
            kern = kernel_module(backend)
            output = getattr(kern, fwd_name)(*inputs)
            ctx.bwd = getattr(kern, bwd_name)
            op._setup(ctx, tuple(inputs), output)
            return output

        @torch.autograd.function.once_differentiable
        def backward(ctx, *grad_outputs):
            return op._backward(ctx.bwd, ctx, grad_outputs)

        camel = "".join(part.title() for part in self.name.split("_"))
        return type(f"{camel}Function", (torch.autograd.Function,),
                    {"forward": staticmethod(forward), "backward": staticmethod(backward),
                     "__doc__": f"Eager autograd of ``{self.name}``: the chosen backend's kernels, called directly."})

    # ------------------------------------------------------------------ calls

    def __call__(self, backend: str, *inputs):
        """The forward outputs for kernel arguments ``inputs`` on ``backend`` (not the reference),
        differentiable when the op has a backward."""
        triton_ops = self.triton_library and backend == "triton" and inputs[0].device.type == "cuda" \
            and _register_triton_library()
        if not torch.compiler.is_compiling():
            if self.function is None:
                return getattr(kernel_module(backend), f"{self.name}_fwd")(*inputs)
            return self.function.apply(*inputs, backend)
        if triton_ops:
            return self.triton_ops[0](*inputs)
        return self.fwd_op(*inputs, backend)

    def register_triton(self, namespace: str, kernels) -> None:
        """Registers ``<namespace>::<name>_fwd/_bwd`` as ``triton_op`` s launching ``kernels``'
        ``<name>_fwd/_bwd`` through ``wrap_triton``, with this op's autograd formula."""
        from torch.library import triton_op

        kernel_fwd, kernel_bwd = getattr(kernels, f"{self.name}_fwd"), getattr(kernels, f"{self.name}_bwd")
        fwd = triton_op(f"{namespace}::{self.name}_fwd", lambda *a: kernel_fwd(*a, _wrap=True), mutates_args=(),
                        schema=self.fwd_schema)
        bwd = triton_op(f"{namespace}::{self.name}_bwd", lambda *a: kernel_bwd(*a, _wrap=True), mutates_args=(),
                        schema=self.bwd_schema)
        fwd.register_autograd(lambda ctx, *g: self._backward(bwd, ctx, g), setup_context=self._setup)
        self.triton_ops = (fwd, bwd)
