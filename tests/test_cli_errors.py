"""Bad input ends with a clear message, a non-zero exit, and nothing downstream replaced."""

import pandas as pd

from conftest import make_series, run_cli, tree_digest


def _good_run(project):
    """Good outputs to protect; made in-process, since only the failing commands are under test."""
    from seqpipe import steps
    from seqpipe.config import load_config

    cfg = load_config(project / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    return {name: tree_digest(project / "data" / name) for name in ("validated", "prepared")}


def _point_source_at(project, path):
    conf = project / "conf" / "pipeline.yaml"
    conf.write_text(conf.read_text().replace("input/sales.csv", str(path)))


def test_missing_value_column_and_duplicates_fail_cleanly(project):
    before = _good_run(project)
    snapshots = tree_digest(project / "data" / "raw" / "snapshots")

    no_value = project / "input" / "no_value.csv"
    make_series().drop(columns="sales").to_csv(no_value, index=False)
    _point_source_at(project, no_value)
    result = run_cli("run", "--conf", str(project / "conf"), cwd=project)
    assert result.returncode == 3
    assert f"error: {no_value}: missing column 'sales' (the value column)" in result.stderr
    assert "Traceback" not in result.stderr.split("error:")[-1]

    duplicated = project / "input" / "duplicated.csv"
    frame = make_series()
    pd.concat([frame, frame.iloc[[70]]]).to_csv(duplicated, index=False)
    conf = project / "conf" / "pipeline.yaml"
    conf.write_text(conf.read_text().replace(str(no_value), str(duplicated)))
    for command in (["ingest"], ["validate"]):
        result = run_cli(*command, "--conf", str(project / "conf"), cwd=project)
    assert result.returncode == 4
    assert "expect_compound_columns_to_be_unique(series_id, timestamp): 2 unexpected, series ['s01']" in result.stderr

    assert {name: tree_digest(project / "data" / name) for name in ("validated", "prepared")} == before
    after = tree_digest(project / "data" / "raw" / "snapshots")
    assert {k: v for k, v in after.items() if k in snapshots} == snapshots


def test_unknown_config_key_exits_non_zero(project):
    conf = project / "conf" / "pipeline.yaml"
    conf.write_text(conf.read_text() + "\nsurprise: true\n")
    result = run_cli("ingest", "--conf", str(project / "conf"), cwd=project)
    assert result.returncode == 2 and "surprise: Extra inputs are not permitted" in result.stderr
