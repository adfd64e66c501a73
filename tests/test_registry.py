"""Registry, promotion gate, rollback and serving against a real MLflow store in a temp folder.

One module-scoped project is ingested, prepared and "trained" once with the two baselines
(no torch training: naive and seasonal_naive have no parameters). On this strongly
seasonal data seasonal_naive is far more accurate than naive, which gives a clearly
better and a clearly worse version to register. Each test registers under its own model
name, so aliases and histories never leak from one test into another.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats

from conftest import (
    HORIZON, LOOKBACK, SERIES, invoke_served, make_series, mlflow_model_server, train_all, write_config,
)
from seqpipe import steps
from seqpipe.config import PipelineConfig, load_config
from seqpipe.errors import ConfigError, RegistryError
from seqpipe.evaluation.gate import decide, diebold_mariano, step_losses
from seqpipe.tracking import registry
from seqpipe.tracking.store import tracking_uri

BETTER, WORSE = "seasonal_naive", "naive"


# -- the Diebold-Mariano test and the decision, on constructed losses ---------------------------

def test_dm_with_one_step_is_the_one_sided_t_test_on_the_loss_differential():
    # With horizon 1 the HLN-corrected DM statistic reduces exactly to a one-sample t-test.
    rng = np.random.default_rng(1)
    challenger, production = rng.gamma(2.0, 1.0, (40, 1)), rng.gamma(2.2, 1.0, (40, 1))
    result = diebold_mariano(challenger, production)
    reference = stats.ttest_1samp((challenger - production).ravel(), 0.0, alternative="less")
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)


def test_dm_multi_step_applies_hln_correction_and_within_series_autocovariances():
    rng = np.random.default_rng(2)
    d = rng.normal(-0.1, 1.0, (12, 3))
    result = diebold_mariano(d, np.zeros_like(d))
    n, h, c = d.size, 3, d - d.mean()
    gammas = [(c[:, k:] * c[:, : h - k]).sum() / n for k in range(h)]
    long_run = gammas[0] + 2 * sum(gammas[1:])
    expected = d.mean() / np.sqrt(long_run / n) * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert result.statistic == pytest.approx(expected, rel=1e-10)
    assert result.p_value == pytest.approx(stats.t.cdf(expected, n - 1), rel=1e-10)


def test_dm_degenerate_differentials():
    losses = np.ones((8, 6))
    assert diebold_mariano(losses, losses).p_value == 1.0  # identical forecasts: no evidence
    assert diebold_mariano(losses * 0.5, losses).p_value == 0.0  # better at every point by the same amount
    assert diebold_mariano(losses * 2.0, losses).p_value == 1.0
    one_series = np.random.default_rng(4).normal(size=(2, 6))
    assert diebold_mariano(one_series[:1] - 5, one_series[1:]).p_value == 1.0  # too few points for the HLN correction


def test_gate_needs_both_the_margin_and_significance():
    rng = np.random.default_rng(3)
    production = rng.gamma(2.0, 1.0, (8, 6))
    noisy = production + rng.normal(-0.05, 1.0, production.shape)  # a bit better on average, mostly noise
    unclear = diebold_mariano(noisy, production)
    assert unclear.p_value > 0.05
    slightly_better = decide("mase", 0.98, 1.0, unclear, margin=0.0, significance=0.05)
    assert not slightly_better.promote and "not below 0.05" in slightly_better.reason

    clear = diebold_mariano(production * 0.5, production)
    assert clear.p_value < 1e-6
    assert decide("mase", 0.5, 1.0, clear, margin=0.0, significance=0.05).promote
    short_of_margin = decide("mase", 0.5, 1.0, clear, margin=0.6, significance=0.05)
    assert not short_of_margin.promote and "below the margin" in short_of_margin.reason
    assert not decide("mase", 1.1, 1.0, clear, margin=0.0, significance=0.05).promote
    assert decide("mase", 3.0, None, None, margin=0.0, significance=0.05).promote  # first version


def test_step_losses_are_scaled_per_series():
    actual = np.array([[10.0, 20.0], [1000.0, 2000.0]])
    forecast = np.array([[11.0, 18.0], [1100.0, 1800.0]])
    scale = np.array([1.0, 100.0])
    np.testing.assert_allclose(step_losses(actual, forecast, scale, "absolute"), [[1, 2], [1, 2]])
    np.testing.assert_allclose(step_losses(actual, forecast, scale, "squared"), [[1, 4], [1, 4]])


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real ``seqpipe`` command, reading its store from the config as a user's shell would.

    MLflow writes MLFLOW_TRACKING_URI into this process's environment when the in-process
    steps connect; a child must not inherit it, or it would ignore its config's store.
    """
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "seqpipe.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**inherited, **(env or {})}, timeout=300)


# -- a real project and store ------------------------------------------------------------------

def _conf(root: Path, folder: str, models: list[str], **sections) -> Path:
    """A config folder beside conf/ (same project root, data and store) with other models or names."""
    conf = root / folder
    shutil.copytree(root / "conf", conf, dirs_exist_ok=True)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = models
    for key, value in sections.items():
        pipeline[key] = {**pipeline.get(key, {}), **value}
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return conf


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    (root / "input").mkdir()
    make_series().to_csv(root / "input" / "sales.csv", index=False)
    conf = write_config(root, models=[BETTER, WORSE])
    (conf / "models" / "naive.yaml").write_text("arch: naive\n")
    cfg = load_config(conf)
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    train_all(cfg)
    return root


def _register(root: Path, name: str, model: str, **sections) -> tuple[PipelineConfig, str]:
    """Register ``model``'s training run under the registered model ``name``; returns its config and version."""
    conf = _conf(root, f"conf-{name}-{model}", [model], tracking={"registered_model": name}, **sections)
    cfg = load_config(conf)
    steps.evaluate(cfg)  # the leaderboard then holds only ``model``, so register picks it
    return cfg, steps.register(cfg)


def _client(cfg: PipelineConfig) -> MlflowClient:
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _production(cfg: PipelineConfig) -> str | None:
    return registry.alias_version(_client(cfg), cfg.tracking.registered_model, registry.PRODUCTION)


# -- the gate against the registry -------------------------------------------------------------

@pytest.mark.slow
def test_gate_promotes_first_and_clearly_better_versions_and_keeps_worse_ones(root):
    name = "gate-model"
    worse_cfg, worse = _register(root, name, WORSE)
    first = steps.gate(worse_cfg)
    assert first["action"] == "promoted" and first["production"] is None
    assert _production(worse_cfg) == worse

    better_cfg, better = _register(root, name, BETTER)
    assert better != worse
    result = run_cli("gate", "--conf", str(better_cfg.root / f"conf-{name}-{BETTER}"), cwd=root)
    assert result.returncode == 0, result.stderr
    assert f"challenger v{better}" in result.stdout and "-> pass" in result.stdout
    assert _production(better_cfg) == better
    tags = _client(better_cfg).get_model_version(name, better).tags
    assert tags["seqpipe.gate.passed"] == "true" and tags["seqpipe.gate.action"] == "promoted"
    assert tags["seqpipe.gate.production_version"] == worse
    assert float(tags["seqpipe.gate.challenger_score"]) < float(tags["seqpipe.gate.production_score"])
    assert float(tags["seqpipe.gate.p_value"]) < 0.05
    # The gate's forecasts through the registered pyfunc reproduce the evaluation's score.
    assert float(tags["seqpipe.gate.challenger_score"]) == pytest.approx(float(tags["seqpipe.test_mase"]), rel=1e-4)
    assert tags["seqpipe.promoted_reason"].startswith("gate: mase improves")

    # The worse model again: same training run, so the same version comes back as challenger.
    _, again = _register(root, name, WORSE)
    assert again == worse
    kept = steps.gate(worse_cfg)
    assert kept["action"] == "kept production" and not kept["passed"]
    assert kept["challenger_score"] > kept["production_score"]
    assert _production(worse_cfg) == better
    assert _client(worse_cfg).get_model_version(name, worse).tags["seqpipe.gate.passed"] == "false"


@pytest.mark.slow
def test_gate_with_auto_promote_off_only_reports(root):
    name = "report-model"
    worse_cfg, worse = _register(root, name, WORSE, promotion={"auto_promote": False})
    steps.promote(worse_cfg, worse, "baseline")
    better_cfg, better = _register(root, name, BETTER, promotion={"auto_promote": False})
    report = steps.gate(better_cfg)
    assert report["passed"] and report["action"] == "report only"
    assert _production(better_cfg) == worse


@pytest.mark.slow
def test_identical_forecasts_are_not_promoted(root):
    name = "twin-model"
    conf = root / "conf"
    (conf / "models" / "naive_twin.yaml").write_text("arch: naive\n")
    twin_conf = _conf(root, "conf-twin-train", ["naive_twin"], tracking={"registered_model": name})
    twin_cfg = load_config(twin_conf)
    train_all(twin_cfg)
    first_cfg, first = _register(root, name, WORSE)
    steps.promote(first_cfg, first, "baseline")
    steps.evaluate(twin_cfg)
    twin = steps.register(twin_cfg)
    assert twin != first
    result = steps.gate(twin_cfg)
    assert not result["passed"] and result["p_value"] == 1.0
    assert _production(twin_cfg) == first


# -- registration is safe to retry -------------------------------------------------------------

@pytest.mark.slow
def test_retried_register_never_duplicates_a_version(root):
    name = "retry-model"
    cfg, version = _register(root, name, BETTER)
    client = _client(cfg)
    # A retry after a crash between registering and aliasing: the alias is gone.
    client.delete_registered_model_alias(name, registry.CHALLENGER)
    assert steps.register(cfg) == version
    assert steps.register(cfg) == version
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [version]
    assert registry.alias_version(client, name, registry.CHALLENGER) == version


# -- promote, versions, rollback through the CLI -----------------------------------------------

@pytest.mark.slow
def test_promote_versions_and_rollback_keep_the_history(root):
    name = "cli-model"
    worse_cfg, worse = _register(root, name, WORSE)
    better_cfg, better = _register(root, name, BETTER)
    conf = str(root / f"conf-{name}-{BETTER}")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, "--conf", conf, cwd=root)

    assert cli("promote", "--version", worse, "--reason", "first release").returncode == 0
    promoted = cli("promote", "--challenger", "--reason", "seasonal model wins")
    assert promoted.returncode == 0, promoted.stderr
    assert f"production: version {worse} -> {better}" in promoted.stdout

    listed = cli("versions")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split("|")[1].strip(): line for line in listed.stdout.splitlines() if line.startswith("| ")}
    assert "challenger,production" in lines[better] and BETTER in lines[better]
    assert "challenger" not in lines[worse] and WORSE in lines[worse]
    client = _client(better_cfg)
    mase = client.get_model_version(name, better).tags["seqpipe.test_mase"]
    assert f"{float(mase):.3f}" in lines[better]

    rolled = cli("rollback", "--reason", "bad forecasts in the north")
    assert rolled.returncode == 0, rolled.stderr
    assert _production(better_cfg) == worse
    history = registry.alias_history(client, name)
    assert [(e["action"], e["from"], e["to"], e["reason"]) for e in history] == [
        ("promote", None, worse, "first release"),
        ("promote", worse, better, "seasonal model wins"),
        ("rollback", better, worse, "bad forecasts in the north"),
    ]
    assert all(e["by"] and e["at"] for e in history)
    assert client.get_model_version(name, worse).tags["seqpipe.rolled_back_to_reason"] == "bad forecasts in the north"

    nothing_left = cli("rollback")
    assert nothing_left.returncode == 5 and "nothing to roll back to" in nothing_left.stderr
    assert _production(better_cfg) == worse
    # The remaining refusals in-process: the CLI's exit codes come from these error classes.
    with pytest.raises(RegistryError, match=f"'{name}' has no version 99"):
        steps.promote(better_cfg, "99", "typo")
    with pytest.raises(ConfigError, match="exactly one of --version N and --challenger"):
        steps.promote(better_cfg, None, "no target")
    with pytest.raises(ConfigError, match="exactly one of --version N and --challenger"):
        steps.promote(better_cfg, worse, "both", challenger=True)
    assert len(registry.alias_history(client, name)) == 3 and _production(better_cfg) == worse


@pytest.mark.slow
def test_concurrent_promotions_lose_no_history_entry(root):
    name = "race-model"
    cfg, first = _register(root, name, WORSE)
    _, second = _register(root, name, BETTER)
    client = _client(cfg)
    rounds, racers = 3, 4
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def racer(index: int) -> None:
        try:
            for round_ in range(rounds):
                barrier.wait(timeout=60)
                registry.promote(_client(cfg), name, [first, second][index % 2], f"r{round_}-{index}")
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    history = registry.alias_history(client, name)
    assert sorted(e["reason"] for e in history) == sorted(f"r{r}-{i}" for r in range(rounds) for i in range(racers))
    current = _production(cfg)
    assert current in (first, second)
    # The alias and the history agree on who holds production.
    assert any(e["to"] == current for e in history)


# -- an unreachable tracking server ------------------------------------------------------------

@pytest.mark.slow
def test_unreachable_tracking_server_fails_fast_and_clearly(root):
    dead = "http://127.0.0.1:9"
    conf = _conf(root, "conf-dead", [BETTER], tracking={"tracking_uri": dead})
    for command, env in ((["register"], None), (["versions"], {"MLFLOW_TRACKING_URI": dead})):
        started = time.monotonic()
        config = conf if env is None else root / "conf"
        result = run_cli(*command, "--conf", str(config), cwd=root, env=env)
        assert time.monotonic() - started < 60
        assert result.returncode == 5, (command, result.stderr)
        assert f"error: cannot reach the MLflow tracking store at {dead}" in result.stderr
        assert "Traceback" not in result.stderr


# -- predict: bad input is refused without an output -------------------------------------------

@pytest.fixture(scope="module")
def served(root) -> PipelineConfig:
    """A registered model with a production version, for predict and serving."""
    cfg, version = _register(root, "served-model", BETTER)
    steps.promote(cfg, version, "serve it")
    return cfg



BAD_INPUTS = {
    "unknown series": (lambda: make_series(series=2).assign(store=["nobody"] * 60 + ["s01"] * 60), [],
                       "1 series the model was not trained on: ['nobody']"),
    "too short": (lambda: make_series().groupby("store").tail(LOOKBACK - 1), [],
                  f"fewer than {LOOKBACK} points of history"),
    "wrong columns": (lambda: make_series().rename(columns={"sales": "revenue"}), [], "missing column 'sales'"),
    "horizon too large": (make_series, ["--horizon", str(HORIZON + 1)], f"horizon {HORIZON + 1} is outside 1..{HORIZON}"),
    "horizon zero": (make_series, ["--horizon", "0"], f"horizon 0 is outside 1..{HORIZON}"),
    "unknown version": (make_series, ["--model", "42"], "cannot load models:/served-model/42"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_predict_refuses_bad_input_without_writing(served, case, tmp_path):
    make, extra, message = BAD_INPUTS[case]
    history, output = tmp_path / "history.csv", tmp_path / "forecast.csv"
    make().to_csv(history, index=False)
    conf = served.root / f"conf-served-model-{BETTER}"
    result = run_cli("predict", "--input", str(history), "--output", str(output), *extra, "--conf", str(conf),
                     cwd=served.root)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


@pytest.mark.slow
def test_predict_shorter_horizon_writes_forecasts(served, tmp_path):
    history, output = tmp_path / "history.csv", tmp_path / "forecast.csv"
    make_series().to_csv(history, index=False)
    conf = served.root / f"conf-served-model-{BETTER}"
    result = run_cli("predict", "--input", str(history), "--output", str(output), "--horizon", "2",
                     "--conf", str(conf), cwd=served.root)
    assert result.returncode == 0, result.stderr
    forecast = pd.read_csv(output)
    assert len(forecast) == SERIES * 2 and set(forecast["step"]) == {1, 2}


# -- serving the production alias over HTTP ----------------------------------------------------

@pytest.mark.slow
def test_served_production_model_forecasts_over_http(served, tmp_path):
    name = served.tracking.registered_model
    history = make_series(series=3).rename(columns={"store": "series_id", "month": "timestamp", "sales": "value"})
    with mlflow_model_server(f"models:/{name}@production", tracking_uri(served), tmp_path) as url:
        predictions = invoke_served(url, history)
    assert len(predictions) == 3 * HORIZON
    assert sorted(predictions["series_id"].unique()) == ["s00", "s01", "s02"]
    assert predictions.groupby("series_id")["step"].apply(list).tolist() == [list(range(1, HORIZON + 1))] * 3
    assert pd.to_datetime(predictions["timestamp"]).min() == pd.Timestamp("2020-01-01")
    # Seasonal naive repeats the last season: the served forecast is the history a year back.
    expected = history.groupby("series_id")["value"].apply(lambda v: v.to_numpy()[-12:][:HORIZON])
    for series_id, values in expected.items():
        np.testing.assert_allclose(predictions.loc[predictions["series_id"] == series_id, "mean"], values, rtol=1e-4)
