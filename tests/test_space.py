"""The search space as plain data: counting, sampling, validation and the integer encoding."""

import copy
import json
import random

import pytest
import yaml

from nas_plugin import space as S
from nas_plugin.errors import NASError


def test_space_is_plain_data_that_round_trips(space):
    assert json.loads(json.dumps(space)) == space
    assert yaml.safe_load(yaml.safe_dump(space)) == space
    assert [u["module"] for u in space["backbone"]] == ["ElasticConv", *["ElasticMBConvStage"] * 5, "ElasticSPPF"]
    csp, conv = "ElasticMBottleneckCSP", "ElasticConv"
    assert [u["module"] for u in space["head"]] == [csp, csp, conv, csp, conv, csp]


def _without_width(space):
    return S.restrict(space, {f for f in S.fields(space) if f[1] != "width"})


def test_counts_match_once_for_all_and_the_neck(space):
    fixed = _without_width(space)
    assert S.count(fixed, ("backbone",)) == 7371**5  # once-for-all's ~2.2e19 for the same choices
    assert S.count(fixed, ("head",)) == 18**4  # per block: 2 kernels x 3 activations x (depth 1, 2 or 3 share them)
    # width at scale n: the 16-channel stem offers 2 channel counts and the 24-channel first stage 3 (shares that
    # round up to a larger one's count are dropped), the other 5 backbone and 6 neck layers 4
    assert S.count(space, ("backbone",)) == 7371**5 * 2 * 3 * 4**5
    assert S.count(space) == 7371**5 * 18**4 * 2 * 3 * 4**5 * 4**6


@pytest.mark.parametrize("make", [S.max_arch, S.min_arch, lambda sp: S.random_arch(sp, seed=7)])
def test_archs_round_trip_json_yaml_and_validate(space, make):
    arch = make(space)
    assert S.validate_arch(space, json.loads(json.dumps(arch))) == arch
    assert S.validate_arch(space, yaml.safe_load(yaml.safe_dump(arch))) == arch


def test_max_and_min_take_last_and_first_choices(space):
    mx, mn = S.max_arch(space), S.min_arch(space)
    assert mx["backbone"][1] == {"depth": 4, "width": 1.0, "kernel": [7] * 4, "expand": [6] * 4}
    assert mn["backbone"][1] == {"depth": 2, "width": 0.25, "kernel": [3] * 2, "expand": [3] * 2}
    assert mx["head"][0] == {"depth": 3, "kernel": 5, "act": "mish", "width": 1.0}
    assert mn["head"][0] == {"depth": 1, "kernel": 3, "act": "relu", "width": 0.25}


def test_random_is_seeded(space):
    assert S.random_arch(space, seed=1) == S.random_arch(space, seed=1)
    assert len({S.arch_key(S.random_arch(space, seed=s)) for s in range(20)}) == 20


def test_sized_archs_run_from_min_to_max_and_spread_between(space):
    """Calibration subnets spread by size: 0 and 1 are min and max, and the genes' mean choice index rises with size
    (uniform archs all sit near the middle)."""
    assert S.sized_arch(space, 0.0, seed=3) == S.min_arch(space)
    assert S.sized_arch(space, 1.0, seed=3) == S.max_arch(space)
    assert S.sized_arch(space, 0.3, seed=5) == S.sized_arch(space, 0.3, seed=5)

    def mean_index(arch):
        x, ub = S.encode(space, arch), S.bounds(space)
        return sum(v / u for v, u in zip(x, ub) if u) / sum(1 for u in ub if u)

    means = [sum(mean_index(S.sized_arch(space, q, seed=i)) for i in range(10)) / 10 for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert means == sorted(means) and means[0] < 0.2 and means[-1] > 0.8
    with pytest.raises(NASError, match=r"size must be in \[0, 1\], got 1.5"):
        S.sized_arch(space, 1.5)


def test_encoding_round_trips_within_bounds(space):
    ub = S.bounds(space)
    # per unit: depth, width, per-unit and per-block genes (stem, 5 stages, SPPF; 4 CSP blocks, 2 convs)
    assert len(ub) == 2 + 5 * (1 + 1 + 4 * 2) + 2 + 4 * (1 + 3) + 2 * 2
    rng = random.Random(0)
    for _ in range(50):
        arch = S.random_arch(space, rng=rng)
        x = S.encode(space, arch)
        assert all(0 <= v <= u for v, u in zip(x, ub))
        assert S.decode(space, x) == arch


def test_inactive_genes_decode_to_the_same_arch(space):
    x = S.encode(space, S.min_arch(space))  # depth 2: blocks 3 and 4 of every stage are inactive
    y = list(x)
    y[2 + 2 + 2 * 2] = 2  # after the stem's 2 genes and stage 1's depth and width: the kernel gene of its block 3
    assert y != x and S.decode(space, y) == S.decode(space, x)


def _bad(space, path, value):
    arch = copy.deepcopy(S.max_arch(space))
    *parents, last = path
    node = arch
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return arch


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("backbone", 1, "kernel", 1), 4, "arch['backbone'][1]['kernel'][1] = 4 is not allowed; choose from [3, 5, 7]"),
        (("backbone", 2, "expand", 0), 0, "arch['backbone'][2]['expand'][0] = 0 is not allowed; choose from [3, 4, 6]"),
        (("backbone", 2, "depth"), 5, "arch['backbone'][2]['depth'] = 5 is not allowed; choose from [2, 3, 4]"),
        (
            ("head", 3, "act"),
            "gelu",
            "arch['head'][3]['act'] = 'gelu' is not allowed; choose from ['relu', 'leakyrelu', 'mish']",
        ),
        (("backbone", 1, "expand"), KeyError, "arch['backbone'][1] is missing ['expand']"),
        (("head", 0, "expand"), 2, "arch['head'][0] has unknown key(s) ['expand']"),
        (("head", 0, "width"), 2, "arch['head'][0]['width'] = 2 is not allowed; choose from [0.25, 0.5, 0.75, 1.0]"),
        (("backbone", 1, "kernel"), [3, 3], "arch['backbone'][1]['kernel'] = [3, 3] must be a list of 4 values"),
        (("head", 1, "kernel"), True, "arch['head'][1]['kernel'] = True is not allowed"),
    ],
)
def test_invalid_archs_name_the_field_value_and_choices(space, path, value, message):
    with pytest.raises(NASError) as e:
        S.validate_arch(space, _bad(space, path, value))
    assert message in str(e.value)


def test_wrong_number_of_stages(space):
    arch = S.max_arch(space)
    arch["backbone"].pop()
    with pytest.raises(NASError, match=r"arch\['backbone'\] has 6 units but the supernet has 7"):
        S.validate_arch(space, arch)


def test_decode_rejects_out_of_bounds(space):
    x = S.encode(space, S.max_arch(space))
    x[0] = 3
    with pytest.raises(NASError, match="does not fit the space"):
        S.decode(space, x)


def test_load_arch_specs(space, tmp_path):
    assert S.load_arch("max", space) == S.max_arch(space)
    assert S.load_arch("random", space, seed=3) == S.random_arch(space, seed=3)
    f = tmp_path / "a.json"
    f.write_text(json.dumps(S.min_arch(space)))
    assert S.load_arch(str(f), space) == S.min_arch(space)
    f.write_text("{not json")
    with pytest.raises(NASError, match="is not valid JSON"):
        S.load_arch(str(f), space)
    with pytest.raises(NASError, match="neither 'max', 'min', 'random' nor an existing JSON file"):
        S.load_arch(str(tmp_path / "missing.json"), space)
