import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from nas_plugin.errors import NASError
from nas_plugin.synthetic_data import SHAPES, make_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(train=8, val=4, imgsz=64)


def _labels(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "labels").rglob("*.txt"))}


def _images(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "images").rglob("*.jpg"))}


def test_layout_and_label_format(tmp_path):
    out = tmp_path / "ds"
    yaml_path = make_dataset(out, **SMALL)
    assert yaml_path == out.resolve() / "data.yaml"
    text = yaml_path.read_text()
    assert f'path: "{out.resolve()}"' in text
    assert "train: images/train" in text and "val: images/val" in text
    for i, name in enumerate(SHAPES):
        assert f"  {i}: {name}" in text

    n_objects = 0
    for split, count in (("train", 8), ("val", 4)):
        images = sorted((out / "images" / split).glob("*.jpg"))
        assert len(images) == count
        for img in images:
            arr = cv2.imread(str(img))
            assert arr is not None and arr.shape == (64, 64, 3)
            label = out / "labels" / split / f"{img.stem}.txt"
            assert label.is_file(), f"missing label for {img}"
            lines = label.read_text().splitlines()
            assert 1 <= len(lines) <= 8
            for line in lines:
                c, *box = line.split()
                assert 0 <= int(c) < len(SHAPES)
                x, y, w, h = map(float, box)
                assert all(0.0 <= v <= 1.0 for v in (x, y, w, h))
                assert w > 0 and h > 0
                assert x - w / 2 >= -1e-6 and x + w / 2 <= 1 + 1e-6
                assert y - h / 2 >= -1e-6 and y + h / 2 <= 1 + 1e-6
            n_objects += len(lines)
    assert n_objects >= 12


def test_classes_subset(tmp_path):
    yaml_path = make_dataset(tmp_path / "ds", classes=["star", "ring"], **SMALL)
    assert "  0: star\n  1: ring\n" in yaml_path.read_text()
    ids = {line.split()[0] for p in (tmp_path / "ds" / "labels").rglob("*.txt") for line in p.read_text().splitlines()}
    assert ids <= {"0", "1"}


def test_deterministic_by_seed(tmp_path):
    a, b, c = (make_dataset(tmp_path / n, seed=s, **SMALL).parent for n, s in (("a", 3), ("b", 3), ("c", 4)))
    assert _labels(a) == _labels(b)
    assert _images(a) == _images(b)
    assert _labels(a) != _labels(c)


def test_refuses_non_empty_dir_unless_exist_ok(tmp_path):
    out = tmp_path / "ds"
    make_dataset(out, **SMALL)
    with pytest.raises(NASError, match="not empty"):
        make_dataset(out, **SMALL)
    # Overwriting with fewer images must not leave stale files behind.
    make_dataset(out, exist_ok=True, train=2, val=1, imgsz=64)
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 2
    assert len(list((out / "labels" / "val").glob("*.txt"))) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(train=0), "train must be"),
        (dict(val=0), "val must be"),
        (dict(imgsz=100), "multiple of 32"),
        (dict(imgsz=16), "imgsz must be"),
        (dict(seed=-1), "seed must be"),
        (dict(test=-1), "test must be an integer >= 0, got -1"),
        (dict(classes=0), "classes must be"),
        (dict(classes=["circle", "hexagon"]), "classes must be"),
        (dict(preset="medium"), "preset 'medium' is not allowed; choose from \\['easy', 'standard', 'hard'\\]"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(tmp_path / "ds", **{**SMALL, **kwargs})
    assert not (tmp_path / "ds").exists()


def test_a_test_split_leaves_train_and_val_as_they_were_and_goes_with_a_rerun_without_it(tmp_path):
    plain, tested = (
        make_dataset(tmp_path / "plain", **SMALL).parent,
        make_dataset(tmp_path / "t", **SMALL, test=3).parent,
    )
    assert "test: images/test" in (tested / "data.yaml").read_text()
    assert "test:" not in (plain / "data.yaml").read_text() and not (plain / "images" / "test").exists()
    images = _images(tested)
    assert (
        len([k for k in images if k.startswith("images/test/")])
        == len(list((tested / "labels" / "test").iterdir()))
        == 3
    )
    assert {k: v for k, v in images.items() if not k.startswith("images/test/")} == _images(plain)
    assert images["images/test/test_000000.jpg"] not in set(_images(plain).values())  # its own images, not val's
    make_dataset(tested, **SMALL, exist_ok=True)
    assert _images(tested) == _images(plain) and "test:" not in (tested / "data.yaml").read_text()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "tools/make_dataset.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_dataset(tmp_path):
    out = tmp_path / "cli"
    r = _cli("--out", out, "--train", 3, "--val", 2, "--imgsz", 64, "--seed", 1)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == out.resolve() / "data.yaml"
    assert len(list((out / "labels" / "train").glob("*.txt"))) == 3

    r = _cli("--out", out, "--train", 3, "--val", 2, "--imgsz", 64)
    assert r.returncode != 0 and "not empty" in r.stderr and "Traceback" not in r.stderr
    assert _cli("--out", out, "--train", 3, "--val", 2, "--imgsz", 64, "--exist-ok").returncode == 0


@pytest.mark.parametrize("args, match", [(("--train", 0), "train must be"), (("--imgsz", 100), "multiple of 32")])
def test_cli_bad_value(tmp_path, args, match):
    r = _cli("--out", tmp_path / "bad", *args)
    assert r.returncode != 0
    assert match in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _object_sizes(root: Path) -> list[float]:
    return [float(line.split()[3]) for p in (root / "labels").rglob("*.txt") for line in p.read_text().splitlines()]


def test_presets_set_the_difficulty(tmp_path):
    easy, hard = (make_dataset(tmp_path / p, preset=p, train=24, val=1, imgsz=64).parent for p in ("easy", "hard"))
    assert "preset easy" in (easy / "data.yaml").read_text()
    assert min(_object_sizes(easy)) >= 0.15  # easy: no small objects
    assert min(_object_sizes(hard)) < 0.15
    assert _labels(make_dataset(tmp_path / "again", preset="easy", train=24, val=1, imgsz=64).parent) == _labels(easy)
    r = _cli("--out", tmp_path / "cli", "--train", 2, "--val", 1, "--imgsz", 64, "--preset", "hard")
    assert r.returncode == 0 and "preset hard" in (tmp_path / "cli" / "data.yaml").read_text()
