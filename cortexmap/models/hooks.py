"""Forward hooks: register/remove bookkeeping and one forward pass that reads layer outputs.

Every place that reads (or edits) a module's output through a forward hook goes through
:func:`forward_hooks` / :func:`run_with_hooks`, so hooks are always removed (also when the pass
fails) and stopping the pass early works the same everywhere: a hook raises
:class:`StopForward` once it has what it needs, and the rest of the network is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

Hook = Callable[[nn.Module, tuple, Any], Any]
Hooks = Mapping[nn.Module, Hook] | list[tuple[nn.Module, Hook]]


class StopForward(Exception):
    """Raised by a hook when the rest of the forward pass is not needed."""


def first_tensor(out) -> torch.Tensor | None:
    """The tensor a layer outputs (first tensor of a tuple/list/dict/namedtuple output)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    return None


@contextlib.contextmanager
def forward_hooks(hooks: Hooks) -> Iterator[None]:
    """Register ``hook`` on each module for the duration of the ``with`` block.

    A hook ``fn(module, inputs, output)`` that returns a value replaces the module's output
    (used to silence units); hooks are removed when the block ends, however it ends.
    """
    pairs = list(hooks.items()) if isinstance(hooks, Mapping) else list(hooks)
    handles = [module.register_forward_hook(fn) for module, fn in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_with_hooks(
    model: nn.Module, x: torch.Tensor, hooks: Hooks, grad: bool = False, eval_mode: bool = False,
) -> Any:
    """``model(x)`` with forward ``hooks``; returns the output, or None when a hook stopped it.

    grad: keep the autograd graph through the hooked outputs (synthesis and gradient receptive
    fields optimise through them; the caller's grad mode applies), else run under
    ``torch.no_grad()``. eval_mode: run in eval mode and restore the model's mode afterwards
    (a network in the middle of training keeps training).
    """
    was_training = model.training
    if eval_mode:
        model.eval()
    try:
        with forward_hooks(hooks), contextlib.nullcontext() if grad else torch.no_grad():
            return model(x)
    except StopForward:
        return None
    finally:
        model.train(was_training)


def capture(
    model: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], grad: bool = False,
    eval_mode: bool = False, stop_early: bool = True,
) -> dict[str, torch.Tensor]:
    """The output tensor of each of ``modules`` ({name: module}) for input ``x``.

    Returns {name: tensor} in the order the modules first ran; a module called more than once
    keeps its last output, and modules the pass never reached are absent. stop_early: skip the
    rest of the network once the last of ``modules`` (give them in execution order) has run and
    every module has an output. grad / eval_mode: as in :func:`run_with_hooks`.
    """
    feats: dict[str, torch.Tensor] = {}
    last = list(modules)[-1] if modules else None

    def make_hook(name: str) -> Hook:
        def hook(_module, _inputs, output):
            t = first_tensor(output)
            if t is not None:
                feats[name] = t
            if stop_early and name == last and len(feats) == len(modules):
                raise StopForward

        return hook

    run_with_hooks(model, x, [(m, make_hook(n)) for n, m in modules.items()], grad=grad,
                   eval_mode=eval_mode)
    return feats
