"""NSGA-II search: the engine on a fake problem (duplicates, resume, fronts) and the tool end to end on tiny data."""

import csv
import json

import pytest

from helpers import SUPERNET_YAML, TINY_SUPERNET, tiny_search_tables, tool
from nas_plugin import space as S
from nas_plugin.search import budget_left_unused, near_budget, non_dominated, pick_best, run_search
from nas_plugin.supernet import load_supernet, space_from_model


class FakeProblem:
    """Accuracy grows with kernel/expand/depth genes, latency with their sum: a smooth trade-off, counted calls."""

    def __init__(self, space):
        self.space, self.evaluated = space, []

    def evaluate(self, archs):
        self.evaluated += [S.arch_key(a) for a in archs]
        out = []
        for a in archs:
            x = S.encode(self.space, a)
            out.append(
                {
                    "map50_95": round(sum(x) ** 0.5 / 10, 6),
                    "map50": round(sum(x) ** 0.5 / 8, 6),
                    "params": 1000 + sum(x),
                    "gflops": 0.1 * sum(x),
                }
            )
        return out

    def latency(self, archs):
        return [1.0 + 0.1 * sum(S.encode(self.space, a)) + 0.01 * a["backbone"][0]["depth"] for a in archs]


def _search(space, out, generations, resume=False, budget=None):
    fake = FakeProblem(space)
    rows, front = run_search(
        space,
        fake.evaluate,
        fake.latency,
        out,
        population=8,
        generations=generations,
        seed=3,
        budgets={"latency_ms": budget},
        resume=resume,
        log=lambda m: None,
    )
    return fake, rows, front


def test_engine_front_is_non_dominated_and_nothing_is_evaluated_twice(space, tmp_path):
    fake, rows, front = _search(space, tmp_path, 5)
    assert len(fake.evaluated) == len(set(fake.evaluated)) == len(rows)
    assert {S.arch_key(S.max_arch(space)), S.arch_key(S.min_arch(space))} <= set(fake.evaluated)
    for a in front:
        for b in front:
            assert not (
                b["map50_95"] >= a["map50_95"]
                and b["latency_ms"] <= a["latency_ms"]
                and a is not b
                and (b["map50_95"], b["latency_ms"]) != (a["map50_95"], a["latency_ms"])
            )
    assert front == non_dominated(rows, "map50_95")
    for name in ("history.csv", "pareto.csv", "pareto.json", "pareto.png"):
        assert (tmp_path / name).exists()


def test_resume_reaches_the_same_front_and_reuses_evaluations(space, tmp_path):
    _, _, full_front = _search(space, tmp_path / "full", 5)
    first, _, _ = _search(space, tmp_path / "cut", 2)  # as if killed after generation 2
    resumed, rows, front = _search(space, tmp_path / "cut", 5, resume=True)
    assert not set(first.evaluated) & set(resumed.evaluated)  # every earlier evaluation came from history.csv
    assert front == full_front
    assert (tmp_path / "cut" / "pareto.csv").read_text() == (tmp_path / "full" / "pareto.csv").read_text()
    assert (tmp_path / "cut" / "history.csv").read_text() == (tmp_path / "full" / "history.csv").read_text()


def test_budget_is_a_hard_constraint(space, tmp_path):
    _, rows, front = _search(space, tmp_path, 3, budget=3.0)
    assert front and all(r["latency_ms"] <= 3.0 for r in front)
    assert any(not r["feasible"] for r in rows)


def test_best_is_picked_by_measured_latency_once_the_front_is_timed():
    """The table underpredicts some subnets: a front member predicted within the budget but timed over it is passed
    over for the most accurate one that is timed within it; if none is, the fastest timed, flagged as not met."""
    front = [
        {"map50_95": 0.2, "latency_ms": 1.0, "measured_ms": 1.1},
        {"map50_95": 0.3, "latency_ms": 1.5, "measured_ms": 1.9},
        {"map50_95": 0.4, "latency_ms": 1.9, "measured_ms": 2.3},
    ]
    assert pick_best(front, "map50_95", 2.0) == (front[1], True)
    assert pick_best(front, "map50_95", 1.05) == (front[0], False)
    assert pick_best(front, "map50_95", None) == (front[2], True)
    untimed = [{k: v for k, v in r.items() if k != "measured_ms"} for r in front]
    assert pick_best(untimed, "map50_95", 1.05) == (untimed[2], True)  # --no-measure-front: the table's word


def test_a_front_ending_well_below_the_budget_is_reported():
    """A front ending below 0.9x the budget (by the table, as the search ranked) is reported with the subnets evaluated
    between it and the budget: the case where inherited accuracy stopped rising with size (README, Known limits)."""
    front = [{"map50_95": 0.2, "latency_ms": 1.0}, {"map50_95": 0.3, "latency_ms": 1.6}]
    rows = [*front, {"map50_95": 0.25, "latency_ms": 1.9}, {"map50_95": 0.1, "latency_ms": 2.5}]
    assert budget_left_unused(rows, front, 2.0) == (1.6, 1)  # 2.5 ms is over the budget, not between
    assert budget_left_unused(front, front, 2.0) == (1.6, 0)
    assert budget_left_unused(rows, front, 1.75) is None  # 1.6 >= 0.9 x 1.75
    assert budget_left_unused(rows, front, None) is None


def test_the_subnet_nearest_a_budget_the_front_leaves_unused_is_handed_over():
    """Where the front ends short of the budget, the most accurate subnet evaluated between its end and the budget
    (within the other budgets too) is the finalist that uses the rest; none where the front reaches the budget."""
    front = [{"map50_95": 0.2, "latency_ms": 1.0, "params": 1e6}, {"map50_95": 0.3, "latency_ms": 1.6, "params": 2e6}]
    between = [{"map50_95": s, "latency_ms": ms, "params": p} for s, ms, p in ((0.25, 1.9, 3e6), (0.28, 1.8, 5e6))]
    rows = [*front, *between, {"map50_95": 0.29, "latency_ms": 2.5, "params": 3e6}]
    assert near_budget(rows, front, {"latency_ms": 2.0}, "map50_95") is between[1]
    assert near_budget(rows, front, {"latency_ms": 2.0, "params": 4e6}, "map50_95") is between[0]
    assert near_budget(front, front, {"latency_ms": 2.0}, "map50_95") is None
    assert near_budget(rows, front, {"latency_ms": 1.75}, "map50_95") is None
    assert near_budget(rows, front, {}, "map50_95") is None


@pytest.fixture(scope="module")
def tiny_search_inputs(tmp_path_factory, tiny_data):
    yaml_path, tables = tiny_search_tables(tmp_path_factory.mktemp("search"))
    return yaml_path, tables[64]


def _args(inputs, data, out, *extra):
    yaml_path, lut = inputs
    return [
        "--weights",
        yaml_path,
        "--data",
        data,
        "--lut",
        lut,
        "--population",
        4,
        "--generations",
        2,
        "--calib-batches",
        1,
        "--out",
        out,
        *extra,
    ]


def test_search_tool_end_to_end(tiny_search_inputs, tiny_data, tmp_path):
    """Ranked on 2 of the 4 val images; the front is re-scored on all 4, as `yolo val` of its files scores it."""
    out = tmp_path / "s"
    proc = tool(
        "search.py",
        *_args(tiny_search_inputs, tiny_data, out, "--latency-budget", 1000, "--val-images", 2),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.output
    subset = out / "val_subset"  # its own folder and label cache: parallel workers never rewrite the val split's
    assert len(list((subset / "images").iterdir())) == 2 and (subset / "labels.cache").is_file()
    for name in (
        "history.csv",
        "pareto.csv",
        "pareto.json",
        "pareto.png",
        "best/arch.json",
        "best/model.yaml",
        "best/model.pt",
    ):
        assert (out / name).exists(), name
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and all((out / "front" / str(i) / "model.pt").exists() for i in range(len(front)))
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert list(history[0]) == ["generation", "arch", "map50_95", "map50", "latency_ms", "params", "gflops", "feasible"]
    assert len({h["arch"] for h in history}) == len(history)
    assert all(r["measured_ms"] > 0 for r in front)  # the front timed whole; every member meets a 1000 ms budget
    assert next(csv.reader(open(out / "pareto.csv")))[-1] == "measured_ms"
    assert "search: the front ends at" in proc.output  # far below a 1000 ms budget: the budget left unused is said
    best = json.loads((out / "best" / "arch.json").read_text())
    assert best == max(front, key=lambda r: r["map50_95"])["arch"]
    assert not (tmp_path / "runs").exists()  # validation writes under --out only

    from ultralytics import YOLO

    for i, row in enumerate(front):
        assert json.loads((out / "front" / str(i) / "arch.json").read_text()) == row["arch"]
        metrics = YOLO(str(out / "front" / str(i) / "model.pt")).val(
            data=str(tiny_data), plots=False, verbose=False, project=str(tmp_path), name=f"v{i}"
        )
        assert abs(metrics.box.map - row["map50_95"]) < 0.005 and abs(metrics.box.map50 - row["map50"]) < 0.005


def test_a_budget_outside_the_supernets_training_band_is_warned_of(tiny_search_inputs, tiny_data, tmp_path):
    yaml_path, lut = tiny_search_inputs
    banded = tmp_path / "tiny-band-supernet.yaml"
    banded.write_text(f"nas:\n  lut: {lut}\n  band: [0.001, 0.002]\n" + yaml_path.read_text())
    big = ["--latency-budget", 1000, "--generations", 1]
    proc = tool("search.py", *_args((banded, lut), tiny_data, tmp_path / "s", *big), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "search: --latency-budget 1000.0 ms lies outside the band [0.001, 0.002] ms this supernet was trained" in (
        proc.stdout + proc.stderr
    )
    plain = tool("search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "p", *big), cwd=tmp_path)
    assert plain.returncode == 0 and "outside the band" not in plain.stdout + plain.stderr


def test_infeasible_budget_says_so_and_fails(tiny_search_inputs, tiny_data, tmp_path):
    proc = tool(
        "search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "s", "--params-budget", 1e-6), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "no evaluated subnet meets the budgets {'params': 1.0}: the fastest of" in proc.stderr
    assert (tmp_path / "s" / "history.csv").exists() and not (tmp_path / "s" / "best").exists()


def test_budget_below_the_smallest_subnet_and_missing_cuda_are_refused_before_work(
    tiny_search_inputs, tiny_data, tmp_path
):
    low = tool(
        "search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "s", "--latency-budget", 0.001), cwd=tmp_path
    )
    assert (
        low.returncode == 2
        and "--latency-budget 0.001 ms is below the smallest subnet's predicted latency" in low.stderr
    )
    assert not (tmp_path / "s" / "history.csv").exists()
    import torch

    if not torch.cuda.is_available():
        cuda = tool(
            "search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "c", "--device", "cuda:0"), cwd=tmp_path
        )
        assert (
            cuda.returncode == 2
            and cuda.stderr.strip()
            == "search.py: error: --device cuda:0 asks for CUDA, but torch sees no CUDA device here; use --device cpu."
        )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency-budget", "0"], "--latency-budget must be > 0 ms, got 0.0."),
        (["--population", "3"], "--population must be >= 4, got 3."),
        (["--objective", "f1"], "--objective 'f1' is not allowed; choose from ['map50_95', 'map50']."),
    ],
)
def test_search_tool_bad_arguments(tiny_search_inputs, tiny_data, tmp_path, extra, message):
    proc = tool("search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "s"), *extra, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"search.py: error: {message}"


def test_search_tool_refuses_bad_inputs_before_work(tiny_search_inputs, tiny_data, tmp_path):
    yaml_path, lut = tiny_search_inputs
    foreign = tool(
        "search.py",
        "--weights",
        SUPERNET_YAML,
        "--data",
        tiny_data,
        "--lut",
        lut,
        "--out",
        tmp_path / "a",
        cwd=tmp_path,
    )
    assert foreign.returncode == 2 and "was built for another supernet" in foreign.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    unwritable = tool("search.py", *_args(tiny_search_inputs, tiny_data, blocked / "out"), cwd=tmp_path)
    assert unwritable.returncode == 2 and "is not writable" in unwritable.stderr
    other = tmp_path / "yolov8n-c80-supernet.yaml"
    other.write_text(TINY_SUPERNET.format(nc=80))
    classes = tool(
        "search.py", "--weights", other, "--data", tiny_data, "--lut", lut, "--out", tmp_path / "c", cwd=tmp_path
    )
    assert classes.returncode == 2 and "was built for another supernet" in classes.stderr  # the table times 6 classes


def test_resume_refuses_a_corrupt_history(tiny_search_inputs, tiny_data, tmp_path):
    out = tmp_path / "s"
    first = tool("search.py", *_args(tiny_search_inputs, tiny_data, out, "--generations", 1), cwd=tmp_path)
    assert first.returncode == 0, first.output
    lines = (out / "history.csv").read_text().splitlines()
    (out / "history.csv").write_text("\n".join([*lines[:2], lines[2][: len(lines[2]) // 2]]) + "\n")  # cut mid-row
    resumed = tool(
        "search.py", *_args(tiny_search_inputs, tiny_data, out, "--generations", 2, "--resume"), cwd=tmp_path
    )
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert resumed.stderr.startswith(f"search.py: error: {out / 'history.csv'} is corrupt at line 3 (")
    assert resumed.stderr.strip().endswith(
        "it cannot be resumed: move it away (the search starts again) or resume from a backup."
    )


def test_resume_refuses_settings_that_change_the_evaluated_rows(tiny_search_inputs, tiny_data, tmp_path):
    out = tmp_path / "s"
    first = tool(
        "search.py",
        *_args(tiny_search_inputs, tiny_data, out, "--latency-budget", 1000, "--generations", 1),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.output
    kept = (out / "search_args.json").read_text()
    other = tool(
        "search.py",
        *_args(tiny_search_inputs, tiny_data, out, "--latency-budget", 1.0, "--generations", 2, "--resume"),
        cwd=tmp_path,
    )
    assert other.returncode == 2
    assert (
        "cannot resume the search in" in other.stderr
        and "with --latency-budget 1.0: it ran with 1000.0" in other.stderr
    )
    assert (out / "search_args.json").read_text() == kept  # the original settings are kept
    same = tool(
        "search.py",
        *_args(tiny_search_inputs, tiny_data, out, "--latency-budget", 1000, "--generations", 2, "--resume"),
        cwd=tmp_path,
    )
    assert same.returncode == 0, same.output


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(population=3), "--population must be >= 4, got 3."),
        (dict(latency="guess"), "--latency 'guess' is not allowed; choose from ['lut', 'measure']."),
        (dict(val_images=0), "--val-images must be >= 1, got 0."),
        (dict(workers=0), "--workers must be >= 1, got 0."),
        (dict(workers=-2), "--workers must be >= 1, got -2."),
    ],
)
def test_keyword_api_checks_every_setting_before_loading_anything(tmp_path, option, message):
    """The library owns the checks (tools/search.py only parses): nothing is read, so the paths need not exist."""
    from nas_plugin.errors import NASError
    from nas_plugin.search_job import run_search_job

    with pytest.raises(NASError) as e:
        run_search_job("missing.pt", "missing.yaml", "missing.json", tmp_path / "s", **option)
    assert str(e.value) == message
    assert not (tmp_path / "s" / "search_args.json").exists()


def test_workers_give_the_same_history_and_front_as_a_serial_run(tiny_search_inputs, tiny_data, tmp_path):
    """An untrained supernet too: the workers get the main process's random weights, not fresh ones."""
    from nas_plugin.search_job import run_search_job

    yaml_path, lut = tiny_search_inputs
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_search_job(
            yaml_path,
            tiny_data,
            lut,
            out,
            population=4,
            generations=2,
            calib_batches=1,
            val_images=2,
            workers=workers,
            measure_front=False,  # timings differ run to run; the evaluations are what must agree
        )
        runs[workers] = [(out / name).read_text() for name in ("history.csv", "pareto.csv", "best/arch.json")]
    assert runs[1] == runs[2]


def test_a_dead_worker_is_replaced_and_its_subnets_scored_again(tiny_search_inputs, tiny_data, tmp_path, monkeypatch):
    import random
    import signal
    import threading
    import time

    import psutil

    from nas_plugin.evaluation import AccuracyEvaluator
    from nas_plugin.parallel import WorkerPool

    yaml_path, _ = tiny_search_inputs
    supernet = load_supernet(yaml_path)
    space = space_from_model(supernet)
    rng = random.Random(0)
    archs = [S.random_arch(space, rng=rng) for _ in range(6)]
    args = dict(data=tiny_data, imgsz=64, work_dir=tmp_path, calib_batches=1)
    serial = AccuracyEvaluator(supernet, **args)(archs)

    from ultralytics.utils import LOGGER

    warnings = []
    monkeypatch.setattr(LOGGER, "warning", lambda msg, *a, **k: warnings.append(msg))  # LOGGER does not propagate

    def workers():
        return [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]

    with WorkerPool(supernet, 2, **args) as pool:
        results = []
        thread = threading.Thread(target=lambda: results.append(pool(archs)))
        thread.start()
        deadline = time.time() + 60
        while not workers() and time.time() < deadline:
            time.sleep(0.05)
        workers()[0].send_signal(signal.SIGKILL)
        thread.join()
    assert results == [serial]
    assert warnings and warnings[0].startswith("a search worker died; restarting 2 workers")


def test_workers_stop_when_the_search_is_killed(tiny_search_inputs, tiny_data, tmp_path):
    """A search killed outright (SIGKILL: no clean-up runs) leaves no worker processes behind."""
    import signal
    import subprocess
    import sys

    import psutil

    yaml_path, _ = tiny_search_inputs
    script = f"""
import random, time
from nas_plugin import space as S
from nas_plugin.parallel import WorkerPool
from nas_plugin.supernet import load_supernet, space_from_model
supernet = load_supernet({str(yaml_path)!r})
arch = S.random_arch(space_from_model(supernet), rng=random.Random(0))
pool = WorkerPool(supernet, 2, data={str(tiny_data)!r}, imgsz=64, work_dir={str(tmp_path)!r}, calib_batches=1)
pool([arch, arch])
print("ready", flush=True)
time.sleep(600)
"""
    search = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert any(line.strip() == "ready" for line in search.stdout)  # after the validator's own output
        workers = [p for p in psutil.Process(search.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        search.send_signal(signal.SIGKILL)
        search.wait()
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive
    finally:
        search.kill()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for this module's Ray tests; skipped where Ray is not installed."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_workers_give_the_same_history_and_front_as_a_serial_run(
    local_ray, tiny_search_inputs, tiny_data, tmp_path
):
    from nas_plugin.search_job import run_search_job

    yaml_path, lut = tiny_search_inputs
    runs = {}
    ray = dict(ray="auto", ray_cpus_per_worker=1, measure_front=False)  # timings differ run to run
    for name, options in {"serial": dict(workers=1, measure_front=False), "ray": ray}.items():
        out = tmp_path / name
        run_search_job(yaml_path, tiny_data, lut, out, population=4, generations=2, calib_batches=1, **options)
        runs[name] = [(out / f).read_text() for f in ("history.csv", "pareto.csv", "best/arch.json")]
    assert runs["serial"] == runs["ray"]

    out = tmp_path / "resumed"  # a driver that died after its first generation, resumed on the cluster
    run_search_job(yaml_path, tiny_data, lut, out, population=4, generations=1, calib_batches=1, **ray)
    run_search_job(yaml_path, tiny_data, lut, out, population=4, generations=2, calib_batches=1, resume=True, **ray)
    assert [(out / f).read_text() for f in ("history.csv", "pareto.csv", "best/arch.json")] == runs["serial"]


def test_a_dead_ray_worker_is_restarted_and_its_subnet_retried(local_ray, tiny_search_inputs, tiny_data, tmp_path):
    import random

    from nas_plugin.evaluation import AccuracyEvaluator
    from nas_plugin.ray_pool import RayPool

    supernet = load_supernet(tiny_search_inputs[0])
    rng = random.Random(0)
    archs = [S.random_arch(space_from_model(supernet), rng=rng) for _ in range(3)]
    args = dict(data=tiny_data, imgsz=64, work_dir=tmp_path, calib_batches=1)
    serial = AccuracyEvaluator(supernet, **args)(archs)
    with RayPool(supernet, "auto", workers=1, **args) as pool:
        assert pool(archs[:1]) == serial[:1]  # the actor is up
        local_ray.kill(pool.actors[0], no_restart=False)  # as a crash would: Ray restarts it
        assert pool(archs) == serial


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ray-cpus-per-worker", "0"], "--ray-cpus-per-worker must be >= 1, got 0."),
        (
            ["--ray", "nowhere"],
            "--ray 'nowhere' is not an address: give 'auto' or HOST:PORT of the cluster's head node.",
        ),
        (["--ray", "127.0.0.1:{port}"], "--ray 127.0.0.1:{port}: no Ray cluster answers there ("),
        (["--ray", "auto"], "--ray needs Ray, which is not installed here: pip install -e '.[ray]'"),
    ],
)
def test_ray_settings_are_refused_before_any_work(tiny_search_inputs, tiny_data, tmp_path, extra, message):
    """In a fresh process (no Ray connection yet), as a user runs it; a port nothing listens on is unreachable."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    if "not installed" in message:  # a `ray` package that fails to import, first on the path
        (tmp_path / "hide" / "ray").mkdir(parents=True)
        (tmp_path / "hide" / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "hide"), env.get("PYTHONPATH", "")])
    elif "--ray" in extra:
        pytest.importorskip("ray")
    extra = [e.format(port=port) for e in extra]
    proc = tool("search.py", *_args(tiny_search_inputs, tiny_data, tmp_path / "s"), *extra, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(f"search.py: error: {message.format(port=port)}")
    assert not (tmp_path / "s" / "search_args.json").exists()


def test_named_archs_within_the_budget_are_written_beside_best(tiny_search_inputs, tiny_data, tmp_path):
    """The stock arch a space contains is handed over too, scored like the front and timed whole with it, where it
    meets the budgets (here a weight budget between the two named archs, so timing noise decides nothing)."""
    import yaml

    from nas_plugin.extract import extract
    from nas_plugin.lut import load_lut, predict_us

    yaml_path, lut = tiny_search_inputs
    supernet = load_supernet(yaml_path)
    space = space_from_model(supernet)
    small, big = S.min_arch(space), S.max_arch(space)
    named = tmp_path / "tiny-named-supernet.yaml"
    named.write_text(yaml.safe_dump({"archs": {"small": small, "big": big}}) + yaml_path.read_text())
    table = load_lut(lut)
    n_small, n_big = (sum(p.numel() for p in extract(supernet, a).parameters()) for a in (small, big))
    out = tmp_path / "s"
    budgets = ("--latency-budget", 1000, "--params-budget", (n_small + n_big) / 2 / 1e6)
    proc = tool("search.py", *_args((named, lut), tiny_data, out, *budgets), cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert json.loads((out / "named" / "small" / "arch.json").read_text()) == small
    assert (out / "named" / "small" / "model.pt").is_file() and not (out / "named" / "big").exists()
    log = proc.stdout + proc.stderr
    predicted = f"{predict_us(table, space, small) / 1000:.2f} ms predicted, "
    assert f"search: named arch small meets the budgets ({predicted}" in log
    assert "ms timed" in log.split("search: named arch small meets the budgets")[1].split("\n")[0]
    assert "search: named arch big (" in log and "ms timed) is outside the budgets" in log

    from ultralytics import YOLO

    inherited = float(log.split("search: named arch small meets the budgets")[1].split("map50_95 ")[1].split()[0])
    metrics = YOLO(str(out / "named" / "small" / "model.pt")).val(
        data=str(tiny_data), plots=False, verbose=False, project=str(tmp_path), name="v"
    )
    assert abs(metrics.box.map - inherited) < 0.005  # the logged score is the written model's


def test_a_named_arch_called_near_budget_is_refused(tiny_search_inputs, tiny_data, tmp_path):
    """The search writes its own named/near_budget/; a YAML arch of that name would be overwritten, so it is refused
    before anything is evaluated."""
    import yaml

    yaml_path, lut = tiny_search_inputs
    named = tmp_path / "tiny-named-supernet.yaml"
    arch = S.min_arch(space_from_model(load_supernet(yaml_path)))
    named.write_text(yaml.safe_dump({"archs": {"near_budget": arch}}) + yaml_path.read_text())
    proc = tool("search.py", *_args((named, lut), tiny_data, tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "search.py: error: the supernet YAML's archs: names an arch 'near_budget'" in proc.stderr
    assert not (tmp_path / "s" / "search_args.json").exists()


def test_named_archs_are_judged_by_their_timed_latency_where_they_were_timed():
    """A budget set to the stock model's timed latency, which the table's prediction of the stock arch can exceed by a
    few per cent: the timed latency decides, as for best/; without one the table does."""
    from nas_plugin.search_job import named_within

    rows = [
        {"name": "over_by_table", "latency_ms": 2.60, "measured_ms": 2.55, "params": 3e6, "gflops": 1.0},
        {"name": "over_when_timed", "latency_ms": 2.50, "measured_ms": 2.70, "params": 3e6, "gflops": 1.0},
        {"name": "untimed", "latency_ms": 2.50, "params": 3e6, "gflops": 1.0},
        {"name": "too_heavy", "latency_ms": 2.00, "measured_ms": 2.00, "params": 5e6, "gflops": 1.0},
    ]
    within, outside = named_within(rows, {"latency_ms": 2.584, "params": 4e6})
    assert [r["name"] for r in within] == ["over_by_table", "untimed"]
    assert [r["name"] for r in outside] == ["over_when_timed", "too_heavy"]
