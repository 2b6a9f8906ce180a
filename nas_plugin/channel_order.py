"""Importance order of channels for elastic width (once-for-all): a narrower width keeps the channels worth keeping.

A narrower width keeps a layer's leading output channels. Before narrower subnets start training, every layer with
width choices gets its output channels sorted, most important first; importance is the L1 norm of the weights that
read the channel, in every layer that consumes it (through Upsample and Concat), as once-for-all sorts by the
consuming layer's weights. The producing rows and the consuming columns move together (with their optimizer state),
so the full network computes exactly what it computed before.
"""

import torch

from .supernet import model_graph


def _readers(graph):
    """{layer: [(reading layer, input position, channel offset in that input)]}, looking through Upsample and Concat."""

    def sources(j):
        node = graph[j]
        if node["op"] == "same":
            return sources(node["f"][0])
        if node["op"] != "concat":
            return [(j, 0)]
        out, offset = [], 0
        for k in node["f"]:
            out += [(src, offset + o) for src, o in sources(k)]
            offset += graph[k]["c2"]
        return out

    readers = {}
    for i, node in enumerate(graph):
        if node["op"] not in ("same", "concat"):
            for pos, j in enumerate(node["f"]):
                for src, offset in sources(j):
                    readers.setdefault(src, []).append((i, pos, offset))
    return readers


def _tensors(module):
    return dict(module.named_parameters()) | dict(module.named_buffers())


def output_order(model):
    """{layer: permutation of its output channels, most important first} for every layer with width choices."""
    graph = model_graph(model)
    readers = _readers(graph)
    orders = {}
    for i, node in enumerate(graph):
        if "channels" not in node:
            continue
        importance = torch.zeros(node["c2"])
        for r, pos, offset in readers.get(i, []):
            tensors = _tensors(model.model[r])
            for key in model.model[r].input_weights()[pos]:
                w = tensors[key].detach().float().cpu()
                importance += w[:, offset : offset + node["c2"]].abs().sum(dim=(0, 2, 3))
        orders[i] = torch.argsort(importance, descending=True, stable=True)
    return orders


def _permute(t, dim, index, optimizer):
    """Reorder `t` in place along `dim`, and its optimizer state (momentum, Adam moments) with it."""
    index = index.to(t.device)
    t.copy_(t.index_select(dim, index))
    for v in (optimizer.state.get(t, {}) if optimizer is not None else {}).values():
        if isinstance(v, torch.Tensor) and v.shape == t.shape:
            v.copy_(v.index_select(dim, index.to(v.device)))


def apply_order(model, orders, optimizer=None):
    """Permute each layer's output rows and its readers' input columns by `orders` (from `output_order`)."""
    graph = model_graph(model)
    readers = _readers(graph)
    with torch.no_grad():
        for i, perm in orders.items():
            m = model.model[i]
            tensors = _tensors(m)
            for key, dim in m.output_weights():
                _permute(tensors[key], dim, perm, optimizer)
            for r, pos, offset in readers.get(i, []):
                tensors = _tensors(model.model[r])
                for key in model.model[r].input_weights()[pos]:
                    index = torch.arange(tensors[key].shape[1])
                    index[offset : offset + len(perm)] = offset + perm
                    _permute(tensors[key], 1, index, optimizer)
