"""Which channels of each layer a subnet uses, from the supernet's layer graph and an arch (no torch).

A supernet layer with elastic width computes its leading channels and zero-pads the rest, so every tensor keeps the
supernet's full width and stock layers in between (Upsample, Concat) need no change. The *graph* is plain data, one
node per layer: `{"f": [input layers], "op": "unit" | "concat" | "same" | "fixed", "c2": full output channels}`, and
for a unit with width choices `"channels"`, the channel count of each choice. From it follow the live channel
indices of every layer's output (after a Concat they are not contiguous: `[0:wa] + [Ca:Ca+wb]`), which extraction
gathers, and the counts the latency table keys its entries by.
"""

import itertools

from .space import units


def has_width(graph):
    """Whether any layer of the graph has width choices (without, every layer always uses all its channels)."""
    return any("channels" in node for node in graph)


def _unit_choices(space, arch):
    """{layer: (space unit, arch unit)} for every elastic unit."""
    return {unit["layer"]: (unit, arch[section][i]) for section, i, unit in units(space)}


def live_indices(graph, space, arch):
    """Per layer, the list of output channel indices `arch` uses (all of them for layers without elastic width)."""
    chosen = _unit_choices(space, arch)
    live = []
    for i, node in enumerate(graph):
        op = node["op"]
        if op == "concat":
            out, offset = [], 0
            for j in node["f"]:
                out += [offset + c for c in live[j]]
                offset += graph[j]["c2"]
        elif op == "same":
            out = live[node["f"][0]]
        elif op == "unit" and "channels" in node:
            unit, a = chosen[i]
            out = list(range(node["channels"][unit["per_unit"]["width"].index(a["width"])]))
        else:
            out = list(range(node["c2"]))
        live.append(out)
    return live


def count_choices(graph):
    """Per layer, the sorted output channel counts any subnet can give it."""
    counts = []
    for node in graph:
        ins = [counts[j] for j in node["f"]]
        if node["op"] == "concat":
            out = sorted({sum(p) for p in itertools.product(*ins)})
        elif node["op"] == "same":
            out = ins[0]
        else:
            out = list(node.get("channels", [node["c2"]]))
        counts.append(out)
    return counts


def input_choices(graph, layer, counts=None):
    """The possible input channel counts of `layer`, one tuple per input combination; None when they never vary."""
    counts = counts or count_choices(graph)
    ins = [counts[j] for j in graph[layer]["f"]]
    return list(itertools.product(*ins)) if any(len(c) > 1 for c in ins) else None
