"""How ingest, validate and prepare scale with rows: time and peak memory per step.

Generates synthetic daily series (many series of a few thousand points) as Parquet,
then runs each step in its own process, timing the step function itself and reading
the process's peak RSS from the kernel. The peer, measured in the same run, is the
floor any ingest pays: read the Parquet file, sort it, write it back.

    .venv/bin/python bench/data_scale.py                 # 1M, 10M and 30M rows
    .venv/bin/python bench/data_scale.py --rows 1e6 1e7  # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from seqpipe.environment import quiet_environment

REPO = Path(__file__).resolve().parents[1]
STEPS = ("ingest", "validate", "prepare")
CHILD = """
import json, sys, time
from seqpipe.config import load_config
from seqpipe import steps
cfg = load_config(sys.argv[1])
started = time.perf_counter()
getattr(steps, sys.argv[2])(cfg)
print("BENCH " + json.dumps({"seconds": time.perf_counter() - started}))
"""
FLOOR = """
import json, sys, time
import pandas as pd
started = time.perf_counter()
frame = pd.read_parquet(sys.argv[1])
frame.sort_values(["series_id", "timestamp"], kind="stable").to_parquet(sys.argv[2], index=False)
print("BENCH " + json.dumps({"seconds": time.perf_counter() - started}))
"""


def generate(path: Path, rows: int, points: int, seed: int = 0) -> int:
    """Write ``rows`` observations as series of ``points`` daily values, a row group per batch of series."""
    rng = np.random.default_rng(seed)
    series = max(1, rows // points)
    per_group = max(1, 1_000_000 // points)
    schema = pa.schema([("series_id", pa.string()), ("timestamp", pa.timestamp("ns")), ("value", pa.float64())])
    stamps = np.arange(np.datetime64("2015-01-01"), np.datetime64("2015-01-01") + points).astype("datetime64[ns]")
    t = np.arange(points)
    with pq.ParquetWriter(path, schema) as writer:
        for first in range(0, series, per_group):
            count = min(per_group, series - first)
            level = rng.uniform(50, 500, (count, 1))
            values = level * (1 + 0.2 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 5, (count, points))
            ids = np.repeat([f"series-{i:07d}" for i in range(first, first + count)], points)
            writer.write_table(pa.table({"series_id": ids, "timestamp": np.tile(stamps, count), "value": values.ravel()},
                                        schema=schema))
    return series * points


def write_project(root: Path, data: Path) -> Path:
    conf = root / "conf"
    (conf / "models").mkdir(parents=True)
    (conf / "models" / "seasonal_naive.yaml").write_text("arch: seasonal_naive\n")
    (conf / "pipeline.yaml").write_text(yaml.safe_dump({
        "data": {"source": {"kind": "parquet", "path": str(data)}, "horizon": 28, "season": 7, "lookback": 56, "freq": "D"},
        "validation": {}, "prepare": {}, "evaluation": {},
        "models": ["seasonal_naive"],
    }))
    return conf


def measure(code: str, *args: str) -> tuple[float, float, float]:
    """(step seconds, process wall seconds, peak RSS in GiB) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=REPO, env=quiet_environment())
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    out, err = child.stdout.read(), child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args}: failed\n{out[-2000:]}\n{err[-4000:]}")
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    return json.loads(line[6:])["seconds"], wall, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=float, nargs="+", default=[1e6, 1e7, 3e7])
    parser.add_argument("--points", type=int, default=2000, help="points per series")
    options = parser.parse_args()

    results = []
    for target in options.rows:
        with tempfile.TemporaryDirectory(prefix="seqpipe-bench-") as folder:
            root = Path(folder)
            data = root / "input.parquet"
            rows = generate(data, int(target), options.points)
            conf = write_project(root, data)
            floor, _, floor_rss = measure(FLOOR, str(data), str(root / "floor.parquet"))
            timings = {step: measure(CHILD, str(conf), step) for step in STEPS}
            results.append((rows, floor, floor_rss, timings))
            print(f"measured {rows:,} rows", file=sys.stderr, flush=True)

    print(f"\n{'rows':>12} {'step':<10} {'seconds':>9} {'peak GiB':>9} {'x floor':>8}")
    for rows, floor, floor_rss, timings in results:
        print(f"{rows:>12,} {'floor':<10} {floor:>9.1f} {floor_rss:>9.2f} {1:>8.2f}")
        for step, (seconds, _, rss) in timings.items():
            print(f"{rows:>12,} {step:<10} {seconds:>9.1f} {rss:>9.2f} {seconds / floor:>8.2f}")
        total = sum(s for s, _, _ in timings.values())
        peak = max(r for _, _, r in timings.values())
        print(f"{rows:>12,} {'total':<10} {total:>9.1f} {peak:>9.2f} {total / floor:>8.2f}")
    totals = {rows: sum(s for s, _, _ in t.values()) for rows, _, _, t in results}
    sizes = sorted(totals)
    for small, large in zip(sizes, sizes[1:]):
        print(f"time ratio {large:,} / {small:,} rows: {totals[large] / totals[small]:.2f} "
              f"(linear would be {large / small:.2f})")


if __name__ == "__main__":
    main()
