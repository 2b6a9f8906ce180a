"""Start-up cost of the nas_plugin interpreter hook (hooks/nas_plugin.pth -> nas_plugin._startup).

Times `python -c pass` with the hook on (NAS_PLUGIN_DISABLE unset) and off (NAS_PLUGIN_DISABLE=1: the .pth line
then imports nothing), interleaved, and reads `python -X importtime -c pass` for the hook's own imports. Two
scenarios: bytecode cached (the usual case; .pyc files go to a temporary PYTHONPYCACHEPREFIX, not the tree) and the
environment as launched (with PYTHONDONTWRITEBYTECODE=1 an editable install compiles the hook at every start).
Writes benchmarks/results/startup.json.

    python benchmarks/bench_startup.py [--runs 20] [--python PATH]
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "startup.json"
HOOK_MODULES = ("nas_plugin", "nas_plugin._startup")
IMPORTTIME = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")


def env(enabled, extra):
    e = {k: v for k, v in os.environ.items() if k not in ("NAS_PLUGIN_DISABLE", "PYTHONPROFILEIMPORTTIME")}
    e.update(extra)
    e = {k: v for k, v in e.items() if v is not None}
    if not enabled:
        e["NAS_PLUGIN_DISABLE"] = "1"
    return e


def wall_ms(python, enabled, extra):
    t0 = time.perf_counter()
    subprocess.run([python, "-c", "pass"], env=env(enabled, extra), check=True)
    return (time.perf_counter() - t0) * 1e3


def importtime_us(python, extra):
    """{module: (self_us, cumulative_us)} for the modules the hook imports, from one `-X importtime` run."""
    cmd = [python, "-X", "importtime", "-c", "pass"]
    err = subprocess.run(cmd, env=env(True, extra), capture_output=True, text=True, check=True).stderr
    found = {}
    for line in err.splitlines():
        m = IMPORTTIME.match(line)
        if m and m.group(4) in HOOK_MODULES:
            found[m.group(4)] = (int(m.group(1)), int(m.group(2)))
    return found


def modules(python, enabled, extra):
    code = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [python, "-c", code], env=env(enabled, extra), capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def measure(python, runs, extra):
    added = sorted(modules(python, True, extra) - modules(python, False, extra))
    if not added:
        sys.exit(f"the hook is not active for {python}: run `pip install -e .` first")
    for _ in range(3):  # warm the page cache (and the bytecode cache, where one is written)
        wall_ms(python, True, extra), wall_ms(python, False, extra)
    on, off = [], []
    for _ in range(runs):  # interleaved, so drift in machine load hits both alike
        on.append(wall_ms(python, True, extra))
        off.append(wall_ms(python, False, extra))
    imports = [importtime_us(python, extra) for _ in range(runs)]
    med_on, med_off = statistics.median(on), statistics.median(off)
    return {
        "wall_ms_median_hook_on": round(med_on, 3),
        "wall_ms_median_hook_off": round(med_off, 3),
        "wall_ms_delta": round(med_on - med_off, 3),
        "ratio_on_over_off": round(med_on / med_off, 4),
        "wall_ms_min_on_off": [round(min(on), 3), round(min(off), 3)],  # less sensitive to machine load
        "wall_ms_stdev_on_off": [round(statistics.stdev(on), 3), round(statistics.stdev(off), 3)],
        "importtime_us_median": {
            name: {
                "self": statistics.median(r[name][0] for r in imports if name in r),
                "cumulative": statistics.median(r[name][1] for r in imports if name in r),
            }
            for name in HOOK_MODULES
            if any(name in r for r in imports)
        },
        "modules_added_by_hook": added,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per setting (default 20)")
    ap.add_argument("--python", default=sys.executable, help="interpreter to measure (default: this one)")
    args = ap.parse_args()

    result = {
        "python": args.python,
        "python_version": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "runs": args.runs,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="nas_plugin_pycache_") as pycache:
        scenarios = {
            # What users normally get: .pyc files are written once and reused (kept out of the tree here).
            "bytecode_cached": {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": pycache},
            # The environment as launched (e.g. PYTHONDONTWRITEBYTECODE=1 with no .pyc: compiled at every start).
            "as_launched": {},
        }
        for name, extra in scenarios.items():
            result["scenarios"][name] = measure(args.python, args.runs, extra)
    result["as_launched_env"] = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")

    print(f"python -c pass, median of {args.runs} ({result['python_version']}, {result['machine']}):")
    for name, r in result["scenarios"].items():
        print(f"[{name}]")
        print(f"  hook on : {r['wall_ms_median_hook_on']:8.2f} ms")
        print(f"  hook off: {r['wall_ms_median_hook_off']:8.2f} ms   (NAS_PLUGIN_DISABLE=1)")
        print(f"  delta   : {r['wall_ms_delta']:8.2f} ms   ratio {r['ratio_on_over_off']:.3f}")
        lo_on, lo_off = r["wall_ms_min_on_off"]
        print(f"  min on/off: {lo_on:.2f} / {lo_off:.2f} ms (delta {lo_on - lo_off:.2f} ms)")
        for mod, t in r["importtime_us_median"].items():
            print(f"  -X importtime {mod}: self {t['self']:.0f} us, cumulative {t['cumulative']:.0f} us")
        print(f"  modules added at start-up: {r['modules_added_by_hook']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
