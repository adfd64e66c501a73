"""What Prefect costs: the whole pipeline through the flow versus the same steps called directly.

Three runs on the default dataset and config (conf/), each a fresh process in its own
throw-away project folder (own data/, MLflow store and Prefect home):

- direct:   the step functions in one process, in the flow's order, no Prefect at all;
- prefect:  `seqpipe run` (the retraining flow; Prefect starts its temporary API server);
- rerun:    `seqpipe run` again in the prefect project, nothing changed: the cache answers.

Overhead is prefect / direct - 1 (goal: at most 10%); the rerun is reported as a share of
the prefect run (goal: at most 15%).

    .venv/bin/python bench/overhead.py
    .venv/bin/python bench/overhead.py --epochs 5    # shorter training, same comparison
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DIRECT = """
import sys
from seqpipe import steps
from seqpipe.config import load_config
cfg = load_config(sys.argv[1])
parent = steps.start_pipeline_run(cfg)
steps.ingest(cfg)
try:
    steps.validate(cfg)
finally:
    steps.record_validation(cfg, parent)
steps.prepare(cfg)
for spec in cfg.models:
    steps.train(cfg, spec.name, parent)
steps.evaluate(cfg, parent)
steps.register(cfg)
steps.gate(cfg)
steps.finish_pipeline_run(cfg, parent, True)
"""


def make_project(folder: Path, epochs: int | None) -> Path:
    conf = folder / "conf"
    shutil.copytree(REPO / "conf", conf)
    for name in ("flows", "seqpipe"):
        shutil.copytree(REPO / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    if epochs is not None:
        config = yaml.safe_load((conf / "pipeline.yaml").read_text())
        config["training"]["max_epochs"] = epochs
        (conf / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return conf


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}); see {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override training.max_epochs (default: conf/)")
    parser.add_argument("--keep", action="store_true", help="keep the project folders and logs")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="seqpipe-overhead-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING", "SEQPIPE_"))}
    python = sys.executable
    try:
        direct_conf = make_project(scratch / "direct", args.epochs)
        flow_conf = make_project(scratch / "prefect", args.epochs)
        flow_env = {**env, "PREFECT_HOME": str(scratch / "prefect" / ".prefect-home")}
        seconds = {
            "direct": timed([python, "-c", DIRECT, str(direct_conf)], scratch / "direct",
                            {**env, "PYTHONPATH": str(scratch / "direct")}, scratch / "direct.log"),
            "prefect": timed([python, "-m", "seqpipe.cli", "run", "--conf", str(flow_conf)], scratch / "prefect",
                             flow_env, scratch / "prefect.log"),
            "rerun": timed([python, "-m", "seqpipe.cli", "run", "--conf", str(flow_conf)], scratch / "prefect",
                           flow_env, scratch / "rerun.log"),
        }
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    overhead = seconds["prefect"] / seconds["direct"] - 1
    rerun_share = seconds["rerun"] / seconds["prefect"]
    print(f"\nmodels: {', '.join(yaml.safe_load((REPO / 'conf' / 'pipeline.yaml').read_text())['models'])}; "
          f"max_epochs: {args.epochs or 'conf'}; {os.cpu_count()} cores" + (f"; logs in {scratch}" if args.keep else ""))
    print("| run | seconds | vs direct | goal |")
    print("| --- | ---: | ---: | --- |")
    print(f"| steps called directly | {seconds['direct']:.1f} | 1.00 | |")
    print(f"| Prefect flow (`seqpipe run`) | {seconds['prefect']:.1f} | {1 + overhead:.2f} | overhead {overhead:+.1%} "
          f"({'met' if overhead <= 0.10 else 'missed'}: at most +10%) |")
    print(f"| unchanged rerun (cache) | {seconds['rerun']:.1f} | {seconds['rerun'] / seconds['direct']:.2f} | "
          f"{rerun_share:.1%} of the flow run ({'met' if rerun_share <= 0.15 else 'missed'}: at most 15%) |")


if __name__ == "__main__":
    main()
