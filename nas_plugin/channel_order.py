"""Importance order of channels for elastic width (once-for-all): a narrower width keeps the channels worth keeping.

A narrower width keeps a layer's leading output channels. Before narrower subnets start training, every layer with
width choices gets its output channels sorted, most important first; importance is the L1 norm of the weights that
read the channel, in every layer that consumes it (through Upsample and Concat), as once-for-all sorts by the
consuming layer's weights. The producing rows and the consuming columns move together (with their optimizer state),
so the full network computes exactly what it computed before.

Channels inside a block that narrower choices keep a leading slice of (a block's hidden width under width, the
expanded channels under expand) are sorted the same way, by the L1 norm of the weights reading them
(`hidden_groups` of each module), when those choices open.
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


def _l1(t, dim, offset, n):
    """L1 norm of each of the n slices of `t` at `offset` along `dim`, in float64: near-ties then keep their order
    when another order moves the other dims (float32 sums in another order can swap them)."""
    return t.detach().cpu().double().narrow(dim, offset, n).abs().transpose(0, dim).reshape(n, -1).sum(1)


def _order(importance):
    return torch.argsort(importance, descending=True, stable=True)


def output_order(model):
    """{layer: permutation of its output channels, most important first} for every layer with width choices."""
    graph = model_graph(model)
    readers = _readers(graph)
    orders = {}
    for i, node in enumerate(graph):
        if "channels" not in node:
            continue
        importance = torch.zeros(node["c2"], dtype=torch.float64)
        for r, pos, offset in readers.get(i, []):
            tensors = _tensors(model.model[r])
            for key in model.model[r].input_weights()[pos]:
                importance += _l1(tensors[key], 1, offset, node["c2"])
        orders[i] = _order(importance)
    return orders


def hidden_order(model, fields):
    """{(layer, group): permutation, most important first} of the hidden channel groups (each module's
    `hidden_groups`) that a choice in `fields` narrows."""
    orders = {}
    for i, m in enumerate(model.model):
        tensors = _tensors(m)
        for g, group in enumerate(getattr(m, "hidden_groups", list)()):
            if set(group["fields"]) & set(fields):
                n = group["size"]
                orders[i, g] = _order(sum(_l1(tensors[key], dim, off, n) for key, dim, off in group["reads"]))
    return orders


def _permute(t, dim, perm, optimizer, offset=0):
    """Reorder the slice of `t` at `offset` along `dim` by `perm` in place, and its optimizer state (momentum, Adam
    moments) with it."""
    index = torch.arange(t.shape[dim])
    index[offset : offset + len(perm)] = offset + perm
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
                    _permute(tensors[key], 1, perm, optimizer, offset)


def apply_hidden_order(model, orders, optimizer=None):
    """Permute every tensor of each hidden group by `orders` (from `hidden_order`)."""
    with torch.no_grad():
        for (i, g), perm in orders.items():
            m = model.model[i]
            tensors, group = _tensors(m), m.hidden_groups()[g]
            for key, dim, offset in group["moves"] + group["reads"]:
                _permute(tensors[key], dim, perm, optimizer, offset)
