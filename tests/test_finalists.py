"""The search's finalists ranked by a short fine-tune (`tools/search.py --select-epochs`)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_search_tables, tool
from nas_plugin import finalists as F
from nas_plugin.files import write_json
from nas_plugin.run_files import _run_dir
from nas_plugin.search import History, near_budget

NEAR = "named_near_budget"


def _subnet(d, arch):
    d.mkdir(parents=True)
    write_json(d / "arch.json", arch)
    (d / "model.pt").write_bytes(b"weights")


def _search_dir(root, imgsz, best, named, front):
    """A search's outputs as `run_search_job` leaves them: settings, front, named scores, best/ and named/<name>/."""
    write_json(root / "search_args.json", {"imgsz": imgsz})
    write_json(root / "pareto.json", {"front": front})
    write_json(root / "named.json", {"named": [{"name": n, **r} for n, r in named.items()]})
    _subnet(root / "best", best)
    for n, r in named.items():
        if r["within"]:
            _subnet(root / "named" / n, r["arch"])


@pytest.fixture
def two_size_search(tmp_path):
    """A search over 64 and 96 px: at 64 px the stock arch is best/ too (one finalist), at 96 px it is not."""
    a, b, stock = {"d": [1]}, {"d": [2]}, {"d": [3]}
    out = tmp_path / "s"
    _search_dir(
        out / "imgsz64",
        64,
        stock,
        {"stock": {"arch": stock, "map50_95": 0.2, "latency_ms": 2.0, "within": True}},
        [{"arch": stock, "map50_95": 0.2, "latency_ms": 2.1, "measured_ms": 2.0}],
    )
    _search_dir(
        out / "imgsz96",
        96,
        a,
        {
            "stock": {"arch": stock, "map50_95": 0.1, "latency_ms": 2.9, "measured_ms": 2.8, "within": True},
            "big": {"arch": b, "map50_95": 0.3, "latency_ms": 9.0, "within": False},
        },
        [{"arch": a, "map50_95": 0.15, "latency_ms": 1.9, "measured_ms": 1.8}],
    )
    _subnet(out / "best", stock)  # the search's pick over sizes: the 64 px one
    return out, a, stock


def test_finalists_are_each_sizes_best_and_named_archs_once_each(two_size_search):
    out, a, stock = two_size_search
    rows = F.finalists(out)
    assert [(r["label"], r["imgsz"]) for r in rows] == [
        ("imgsz64_best", 64),
        ("imgsz96_best", 96),
        ("imgsz96_named_stock", 96),
    ]
    assert [r["latency_ms"] for r in rows] == [2.0, 1.8, 2.8]  # timed whole where it was
    assert [r["inherited"] for r in rows] == [0.2, 0.15, 0.1]
    assert rows[0]["arch"] == rows[2]["arch"] == stock  # the stock arch at 64 and at 96 px: two finalists


def test_the_best_fine_tuned_on_val_becomes_best(two_size_search, monkeypatch):
    """Each finalist trains with its own imgsz and the user's arguments; the highest val score is copied to best/,
    whatever the inherited scores said; a second run trains nothing it has finished."""
    out, a, stock = two_size_search
    scores = {"imgsz64_best": (0.40, 0.6), "imgsz96_best": (0.45, 0.7), "imgsz96_named_stock": (0.50, 0.5)}
    trained = []

    def fake_trainings(commands, jobs):
        for name, cmd in commands.items():
            if cmd is None:
                continue
            args = dict(c.split("=", 1) for c in cmd if "=" in c)
            assert args["epochs"] == "3" and args["optimizer"] in ("AdamW", "SGD") and args["plots"] == "False"
            assert args["imgsz"] == str({"imgsz64_best": 64}.get(name, 96)) and args["model"].endswith("model.pt")
            run = _run_dir(cmd)
            (run / "weights").mkdir(parents=True)
            torch.save({"optimizer": None}, run / "weights" / "last.pt")  # a finished run, as train_done reads it
            m = scores[name]
            (run / "results.csv").write_text(f"epoch,metrics/mAP50-95(B),metrics/mAP50(B)\n3,{m[0]},{m[1]}\n")
            trained.append(name)

    monkeypatch.setattr(F, "run_trainings", fake_trainings)
    rows = F.select_finalists(out, "data.yaml", 3, {"optimizer": "AdamW"})
    assert sorted(trained) == sorted(scores)
    assert [r["label"] for r in rows if r["selected"]] == ["imgsz96_named_stock"]
    assert json.loads((out / "best" / "arch.json").read_text()) == stock
    assert (out / "imgsz96" / "best" / "arch.json").is_file()  # the size's own best/ is left as it was
    kept = json.loads((out / "finalists.json").read_text())
    assert kept["epochs"] == 3 and [r["map50_95"] for r in kept["finalists"]] == [0.40, 0.45, 0.50]
    assert (out / "finalists.csv").read_text().splitlines()[0].startswith("label,dir,imgsz,latency_ms,inherited,")

    rows = F.select_finalists(out, "data.yaml", 3, {"optimizer": "AdamW"}, objective="map50")
    assert len(trained) == 3  # the finished runs are read, not trained again
    assert [r["label"] for r in rows if r["selected"]] == ["imgsz96_best"]  # by mAP50 now
    assert json.loads((out / "best" / "arch.json").read_text()) == a
    F.select_finalists(out, "data.yaml", 3, {"optimizer": "SGD"})
    assert len(trained) == 6  # other settings: new runs


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--select-epochs", "-1"], "--select-epochs must be >= 0 (0: no selection), got -1."),
        (["--select-args", "epochs=5"], "--select-args cannot set 'epochs': the selection sets data, model,"),
        (["--select-args", "lr0"], "--select-args takes key=value pairs separated by spaces, got 'lr0'."),
    ],
)
def test_bad_selection_settings_are_refused_before_the_search(tmp_path, extra, message):
    proc = tool(
        "search.py", "--weights", "w.pt", "--data", "d.yaml", "--lut", "l.json", "--out", "s", *extra, cwd=tmp_path
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "s").exists()


def test_search_with_selection_end_to_end(tiny_data, tmp_path):
    """A real search with two named archs, its finalists fine-tuned 1 epoch by stock `yolo train`: best/ is the one
    whose run scored highest on val, and a resumed search reuses the finished fine-tunes."""
    from nas_plugin import space as S
    from nas_plugin.supernet import load_supernet, space_from_model

    yaml_path, tables = tiny_search_tables(tmp_path, (64,))
    space = space_from_model(load_supernet(yaml_path))
    named = tmp_path / "tiny-named-supernet.yaml"
    archs = {"small": S.min_arch(space), "big": S.max_arch(space)}
    named.write_text(yaml.safe_dump({"archs": archs}) + yaml_path.read_text())
    out = tmp_path / "s"
    args = ["--weights", named, "--data", tiny_data, "--lut", tables[64], "--latency-budget", 1000]
    args += ["--population", 4, "--generations", 1, "--calib-batches", 1, "--out", out]
    args += ["--select-epochs", 1, "--select-args", "batch=4 workers=0"]
    proc = tool("search.py", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    rows = json.loads((out / "finalists.json").read_text())["finalists"]
    assert rows[0]["label"] == "best" and {r["label"] for r in rows[1:]} <= {"named_small", "named_big", NEAR}
    front = json.loads((out / "pareto.json").read_text())["front"]
    near = near_budget(list(History(out / "history.csv").load().rows.values()), front, {"latency_ms": 1000}, "map50_95")
    assert near is not None  # an untrained supernet scores alike: the front is its fastest, the rest lie between
    assert json.loads((out / "named" / "near_budget" / "arch.json").read_text()) == near["arch"]
    assert NEAR in {r["label"] for r in rows} or near["arch"] in [r["arch"] for r in rows]
    assert len(rows) >= 2 and len({json.dumps(r["arch"]) for r in rows}) == len(rows)
    winner = max(rows, key=lambda r: r["map50_95"])
    assert [r for r in rows if r["selected"]] == [winner]
    assert json.loads((out / "best" / "arch.json").read_text()) == winner["arch"]
    assert "select: fine-tuning" in proc.output and "<- best/" in proc.output
    results = [(p, p.stat().st_mtime) for p in (out / "finalists").glob("*/results.csv")]
    assert len(results) == len(rows) and all((Path(r["run"]) / "weights" / "last.pt").is_file() for r in rows)

    proc = tool("search.py", *args, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert [(p, p.stat().st_mtime) for p, _ in results] == results  # nothing trained again
