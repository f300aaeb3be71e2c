"""Split a network at a layer: ``head`` (input -> layer output), ``tail`` (layer output -> output).

Probes that perturb one layer many times (unit ablation, kernel lesions) compute ``head`` once,
cache its output, and run only ``tail`` per perturbation. The split is done on the torch.fx graph
(traced with torchvision's ``NodePathTracer`` so layer names are the ones users already know from
``create_feature_extractor``), which works for branching networks (Inception, ResNet) as long as
the layer is a cut point: nothing after it reads an earlier value.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from cortexmap.errors import CortexmapError
from cortexmap.models.predict import batched


def _layer_node(graph: fx.Graph, qualnames: dict[fx.Node, str], layer: str) -> fx.Node:
    """The node whose value is the output of ``layer`` (the last node inside that module)."""
    target = None
    for node in graph.nodes:
        q = qualnames.get(node, "")
        if q == layer or q.startswith(layer + "."):
            target = node
    if target is None:
        valid = sorted({q.split(".")[0] for q in qualnames.values() if q and q != "x"})
        raise CortexmapError(
            f"Layer {layer!r} is not in the model's graph; valid top-level names include: "
            f"{', '.join(valid)} (see `cortexmap layers MODEL` for all names)."
        )
    return target


Traced = tuple[fx.Graph, dict[fx.Node, str]]


def trace_model(model: nn.Module) -> Traced:
    """The model's fx graph and each node's layer name, for :func:`split_at` and
    :func:`tail_at` (trace once, split at several layers)."""
    # lazy: torchvision takes seconds to import, which every CLI command would pay
    from torchvision.models.feature_extraction import NodePathTracer

    tracer = NodePathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow
        raise CortexmapError(
            f"Cannot trace {type(model).__name__} with torch.fx ({exc}); split_at needs a "
            "traceable model (torchvision, timm and zoo models are)."
        ) from exc
    return graph, dict(tracer.node_to_qualname)


def _copy(traced: Traced) -> Traced:
    graph, qualnames = traced
    new = copy.deepcopy(graph)
    pairs = zip(graph.nodes, new.nodes, strict=True)
    return new, {n: qualnames.get(g, "") for g, n in pairs}


def split_at(model: nn.Module, layer: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Return ``(head, tail)`` with ``tail(head(x))`` equal to ``model(x)``.

    head: (n, C, H, W) images -> output of ``layer`` (e.g. (n, K, h, w)).
    tail: output of ``layer`` -> model output (e.g. logits (n, n_classes)).
    Both share the model's parameters (no copies of weights) and are put in eval mode.
    """
    traced = trace_model(model)
    graph, qualnames = _copy(traced)
    head = fx.GraphModule(model, graph)
    head_target = _layer_node(head.graph, qualnames, layer)
    output = next(n for n in head.graph.nodes if n.op == "output")
    output.args = (head_target,)
    head.graph.eliminate_dead_code()
    head.recompile()
    return head.eval(), _tail(model, *traced, layer)


def tail_at(model: nn.Module, layer: str, traced: Traced) -> fx.GraphModule:
    """The ``tail`` of :func:`split_at` from a graph traced once (:func:`trace_model`)."""
    return _tail(model, *_copy(traced), layer)


def _tail(model: nn.Module, graph: fx.Graph, qualnames: dict[fx.Node, str],
          layer: str) -> fx.GraphModule:
    tail = fx.GraphModule(model, graph)
    graph = tail.graph
    target = _layer_node(graph, qualnames, layer)
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    with graph.inserting_before(inputs[0]):
        activation = graph.placeholder("activation")
    target.replace_all_uses_with(activation)
    graph.eliminate_dead_code()
    still_used = [n for n in inputs if n.users]
    if still_used:
        raise CortexmapError(
            f"Layer {layer!r} is not a cut point of the network: later layers still read values "
            "computed before it (a skip connection around it). Choose a layer at a block "
            "boundary, e.g. a whole residual block such as 'layer2' instead of 'layer2.0.conv1'."
        )
    for node in inputs:
        graph.erase_node(node)
    tail.recompile()
    return tail.eval()


@torch.no_grad()
def layer_output(head: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Run ``head`` over ``images`` in batches and concatenate: the cache ablations reuse."""
    return batched(head, images, batch_size)
