"""The ``seqpipe`` command: each subcommand calls one step function (or the flow).

Commands import the steps inside their bodies so that ``--help`` and ``datasets``
answer without loading torch, MLflow and Great Expectations.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from seqpipe.environment import apply_quiet_defaults, configure_logging
from seqpipe.errors import STORAGE_FULL_ERRNOS, STORAGE_FULL_EXIT_CODE, OrchestrationError, SeqpipeError

# No network here or in CI: keep every library's telemetry from trying (before any of them is imported).
apply_quiet_defaults()

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
ConfOption = Annotated[Path, typer.Option("--conf", help="config folder (pipeline.yaml, models/)", envvar="SEQPIPE_CONF")]
DEFAULT_CONF = Path("conf")
# Prefect's own setting (20 s by default), read when Prefect is imported: set from the config before that.
EPHEMERAL_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


@app.callback()
def _options(
    profile: Annotated[Optional[str], typer.Option("--profile", envvar="SEQPIPE_PROFILE",
                                                   help="overlay conf/profiles/<name>.yaml (comma-separated)")] = None,
) -> None:
    configure_logging()  # the steps log; show their lines as the commands' output
    if profile:
        os.environ["SEQPIPE_PROFILE"] = profile  # flows and workers started from here load it too


def _config(conf: Path):
    from seqpipe.config import load_config

    cfg = load_config(conf)
    # Before anything imports Prefect, which reads its settings once per process.
    if cfg.orchestration.prefect_api_url:
        os.environ.setdefault("PREFECT_API_URL", cfg.orchestration.prefect_api_url)
    # As often as the crash automation of `seqpipe deploy` expects them (flows/deployment.py); the config
    # wins over the environment, so that the two agree. Flow runs that this process starts inherit it.
    os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(cfg.orchestration.heartbeat_seconds)
    os.environ.setdefault(EPHEMERAL_TIMEOUT_ENV, str(cfg.orchestration.ephemeral_startup_timeout))
    return cfg


def _locked(cfg, command: str):
    """Hold the project's data folder for the command (seqpipe.locking): another run waits, then fails."""
    from seqpipe.locking import project_lock

    return project_lock(cfg, f"seqpipe {command}")


@contextlib.contextmanager
def _prefect_started():
    """Say what happened, and which setting to raise, when Prefect's temporary API server does not start."""
    try:
        yield
    except RuntimeError as exc:
        if "ephemeral Prefect API server" not in str(exc):
            raise
        said = str(exc).split(" stdout:")[0]  # Prefect appends the server's whole output
        why = "its process ended" if "exited with code" in said else "a busy machine may need longer"
        raise OrchestrationError(
            f"Prefect's temporary API server did not answer within {os.environ.get(EPHEMERAL_TIMEOUT_ENV)} s, so "
            f"nothing ran ({why}; Prefect: {said}). Raise orchestration.ephemeral_startup_timeout (or "
            f"{EPHEMERAL_TIMEOUT_ENV}, which wins), or run against a Prefect server (`make up`, "
            f"orchestration.prefect_api_url)"
        ) from exc


@app.command()
def run(conf: ConfOption = DEFAULT_CONF) -> None:
    """Run the whole pipeline as a Prefect flow (training in-process, or on workers: orchestration.mode)."""
    cfg = _config(conf)
    with _locked(cfg, "run"), _prefect_started():  # the flow takes the same hold again, so a deployment's run locks too
        from flows.pipeline import retrain

        retrain(conf_dir=str(conf))


@app.command()
def ingest(conf: ConfOption = DEFAULT_CONF) -> None:
    """Read the configured source into an immutable raw snapshot under data/raw."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "ingest"):
        steps.ingest(cfg)


@app.command()
def validate(conf: ConfOption = DEFAULT_CONF) -> None:
    """Validate the latest snapshot with Great Expectations."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "validate"):
        steps.validate(cfg)


@app.command()
def prepare(conf: ConfOption = DEFAULT_CONF) -> None:
    """Split, scale and window the validated data."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "prepare"):
        steps.prepare(cfg)


@app.command()
def train(
    model: Annotated[Optional[list[str]], typer.Option("--model", help="train only this model (repeatable)")] = None,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Train the configured models, each in a child MLflow run of the pipeline's parent run.

    Several models fan out as the pipeline's do (orchestration.mode: in this process or on
    a work pool). One model (a DVC stage: `seqpipe train --model lstm`) needs no fan-out
    and trains here, without starting Prefect. Run as separate processes, the models of
    one pipeline still meet under one parent run, found by the data, config and code.
    This command always trains: whoever calls it (a user, `dvc repro`) has decided that it
    should, so Prefect's step cache, which `seqpipe run` uses, is not consulted.
    """
    cfg = _config(conf)  # before Prefect is imported: it reads the settings _config sets once
    from seqpipe import steps

    names = model or [spec.name for spec in cfg.models]
    for name in names:
        cfg.model(name)  # an unknown name fails before anything trains
    if len(names) == 1:
        with _locked(cfg, "train"), steps.pipeline_run_of_data(cfg) as parent_run_id:
            steps.train(cfg, names[0], parent_run_id)
        return
    from flows.training import train_models

    cfg = cfg.model_copy(update={"orchestration": cfg.orchestration.model_copy(update={"cache": False})})
    with _locked(cfg, "train"), _prefect_started(), steps.pipeline_run_of_data(cfg) as parent_run_id:
        train_models(cfg, names, parent_run_id)


@app.command()
def evaluate(conf: ConfOption = DEFAULT_CONF) -> None:
    """Score the trained models on the test split and print the leaderboard."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "evaluate"):
        steps.evaluate(cfg)
    print(f"Leaderboard ({steps.leaderboard_title(cfg)}):\n{steps.leaderboard_markdown(cfg)}")


@app.command()
def backtest(
    write_when_off: Annotated[bool, typer.Option(
        "--write-when-off", help="with evaluation.backtest.folds 0, still write data/backtest empty (for DVC)")] = False,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Refit and score the models at several earlier forecast origins (conf: evaluation.backtest)."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "backtest"):
        steps.backtest(cfg, write_when_off=write_when_off)
    if cfg.evaluation.backtest.folds:
        print((steps.Layout.of(cfg).backtest / "summary.md").read_text())


@app.command()
def select(
    write_when_off: Annotated[bool, typer.Option(
        "--write-when-off", help="with evaluation.selection.method validation, still write data/selection empty (for DVC)")] = False,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Refit and score every model on backtest folds before the test window, which then rank (conf: evaluation.selection)."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "select"):
        steps.select(cfg, write_when_off=write_when_off)
    if cfg.evaluation.selection.method == "backtest":
        print((steps.Layout.of(cfg).selection / "summary.md").read_text())


@app.command()
def register(conf: ConfOption = DEFAULT_CONF) -> None:
    """Register the leaderboard's best model with the alias 'challenger'."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "register"):
        steps.register(cfg)


@app.command()
def gate(conf: ConfOption = DEFAULT_CONF) -> None:
    """Compare the challenger with production on the test split; promote it if it passes (conf: promotion)."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "gate"):
        steps.gate(cfg)


@app.command()
def versions(conf: ConfOption = DEFAULT_CONF) -> None:
    """List the registered versions with their aliases, test metrics, gate outcome and creation time."""
    from seqpipe import steps
    from seqpipe.evaluation.leaderboard import to_markdown

    cfg = _config(conf)
    table = steps.versions(cfg)
    if len(table):
        print(f"registered model '{cfg.tracking.registered_model}':\n{to_markdown(table)}")


@app.command()
def promote(
    reason: Annotated[str, typer.Option("--reason", help="why; kept in the registry's history")],
    version: Annotated[Optional[str], typer.Option("--version", help="registered model version to serve")] = None,
    challenger: Annotated[bool, typer.Option("--challenger", help="promote the version aliased 'challenger'")] = False,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Move the 'production' alias to a registered version (--version N or --challenger)."""
    from seqpipe import steps

    steps.promote(_config(conf), version, reason, challenger=challenger)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="why; kept in the registry's history")] = "manual rollback",
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Move 'production' back to the version the current one replaced."""
    from seqpipe import steps

    steps.rollback(_config(conf), reason)


@app.command()
def predict(
    input: Annotated[Path, typer.Option("--input", help="series history, or sequences or texts to label: CSV or Parquet")],
    output: Annotated[Path, typer.Option("--output", help="forecasts or labels: CSV or Parquet, by suffix")],
    model: Annotated[str, typer.Option("--model", help="production, challenger or a version number")] = "production",
    horizon: Annotated[Optional[int], typer.Option("--horizon", help="forecasting only: steps ahead; default: the model's")] = None,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Forecast every series, or label every sequence or text, in an input file with a registered model."""
    from seqpipe import steps

    steps.predict(_config(conf), model, input, output, horizon)


@app.command()
def synthesize(
    model: Annotated[Optional[str], typer.Option("--model", help="a trained gan; default: synthesis.model")] = None,
    series: Annotated[Optional[int], typer.Option("--series", help="how many; default: synthesis.series")] = None,
    length: Annotated[Optional[int], typer.Option("--length", help="points each; default: synthesis.length")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="default: synthesis.seed")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="CSV or Parquet; default: data/synthetic/<model>.parquet")] = None,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Draw synthetic series of the training distribution from a trained GAN's generator."""
    from seqpipe import steps

    cfg = _config(conf)
    with _locked(cfg, "synthesize"):  # reads the trained models a run may be replacing
        steps.synthesize(cfg, model, series, length, seed, output)


@app.command(name="lineage")
def lineage_command(
    reference: Annotated[str, typer.Argument(help="production, challenger or a version number")] = "production",
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Print the chain from source data to a registered version."""
    from seqpipe import steps

    steps.lineage(_config(conf), reference)


@app.command()
def reproduce(
    reference: Annotated[str, typer.Argument(help="production, challenger or a version number")],
    run: Annotated[bool, typer.Option("--run", help="execute the commands in a temporary worktree and compare")] = False,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Tell the exact git and DVC commands that rebuild a version (and, with --run, run them)."""
    from seqpipe import steps

    result = steps.reproduce(_config(conf), reference, run=run)
    if run and not result["reproduced"]:
        sys.exit(1)


@app.command()
def datasets() -> None:
    """List the built-in datasets of each task (data.source.name, or classify.source.name)."""
    from seqpipe.data.catalog import BUILTIN_DATASETS
    from seqpipe.data.sequences import BUILTIN_SEQUENCES
    from seqpipe.data.texts import BUILTIN_TEXTS

    print("task: forecast")
    for d in BUILTIN_DATASETS.values():
        print(f"  {d.name:<18} freq {d.freq or 'step':<5} horizon {d.horizon:>3}  season {d.season:>3}  "
              f"lookback {d.lookback:>3}  {d.description}")
    print("task: classify")
    for name, description in {**BUILTIN_SEQUENCES, **BUILTIN_TEXTS}.items():
        print(f"  {name:<18} {description}")


@app.command()
def models() -> None:
    """List each task's model architectures with their default params (conf/models/<name>.yaml overrides them)."""
    import json

    from seqpipe.estimators import default_params
    from seqpipe.estimators.catalog import task_of

    defaults = default_params()
    for task in ("forecast", "classify"):
        print(f"task: {task}")
        for name, params in defaults.items():
            if task_of(name) == task:
                print(f"  {name:<26} {json.dumps(params)}")


@app.command()
def serve(conf: ConfOption = DEFAULT_CONF) -> None:
    """Serve the retraining flow on its cron schedule (conf: schedule) against a Prefect server."""
    from flows.pipeline import serve as serve_flow

    serve_flow(_config(conf), str(conf))


@app.command()
def deploy(conf: ConfOption = DEFAULT_CONF) -> None:
    """Create the work pools and the deployments of prefect.yaml (retrain on its cron, train-model)."""
    cfg = _config(conf)
    from flows.deployment import deploy as deploy_flows

    sys.exit(deploy_flows(cfg, str(conf)))


@app.command()
def worker(
    pool: Annotated[Optional[str], typer.Option("--pool", help="work pool to poll (default: orchestration.work_pool)")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="flow runs at once on this worker")] = None,
    conf: ConfOption = DEFAULT_CONF,
) -> None:
    """Start a Prefect worker for this project: it runs training (or retraining) flow runs here."""
    cfg = _config(conf)
    from flows.deployment import start_worker

    start_worker(cfg, pool or cfg.orchestration.work_pool, limit)


@app.command()
def up(conf: ConfOption = DEFAULT_CONF) -> None:
    """Start the MLflow and Prefect servers of the config's `servers` (PostgreSQL) in the background."""
    from seqpipe import servers

    urls = servers.up(_config(conf))
    print(f"MLflow UI: {urls['mlflow']}  Prefect UI: {urls['prefect'].removesuffix('/api')}")


@app.command()
def down(conf: ConfOption = DEFAULT_CONF) -> None:
    """Stop the servers `seqpipe up` started."""
    from seqpipe import servers

    servers.down(_config(conf))


def main() -> None:
    try:
        app(standalone_mode=False)
    except SeqpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in STORAGE_FULL_ERRNOS:
            raise
        # Every step writes into staging and swaps only complete outputs in, so nothing earlier is lost.
        print(f"error: {exc.strerror} while writing {exc.filename or 'an output'}; earlier outputs are "
              "untouched: free space and run the command again", file=sys.stderr)
        sys.exit(STORAGE_FULL_EXIT_CODE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)


if __name__ == "__main__":
    main()
