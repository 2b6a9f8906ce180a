"""Helpers shared by the tests: paths, and running commands the way a user would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPERNET_FILE = ROOT / "model_yamls" / "yolov8-mbconv-supernet.yaml"
SUPERNET_YAML = SUPERNET_FILE.with_name("yolov8n-mbconv-supernet.yaml")  # scale n, selected by name as in stock YOLO


def run_cli(args, cwd, env=None, timeout=600):
    """Run a command as a user would (subprocess, its own cwd); returns the CompletedProcess with merged output."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    return proc


def yolo(*args, cwd, env=None):
    """The stock `yolo` CLI of this environment with key=value arguments."""
    return run_cli([str(Path(sys.executable).with_name("yolo")), *args], cwd=cwd, env=env)


def tool(name, *args, cwd, env=None):
    """One of the project's tools/ scripts."""
    return run_cli([sys.executable, str(ROOT / "tools" / name), *map(str, args)], cwd=cwd, env=env)
