"""Every broken input ends with its exit code and a message naming file, rule and series,
with no prepared output replaced and the previous good snapshot intact."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from broken_inputs import CASES, Case
from conftest import tree_digest
from seqpipe.cli import main


def invoke(capsys, *args: str) -> tuple[int, str]:
    """Run the real CLI entry point in-process (same code path and exit codes, no interpreter start-up)."""
    argv = sys.argv
    sys.argv = ["seqpipe", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def _pipeline_until_failure(capsys, conf: str) -> tuple[int, str]:
    for step in ("ingest", "validate", "prepare"):
        code, err = invoke(capsys, step, "--conf", conf)
        if code:
            return code, err
    return 0, ""


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_input_is_refused(case: Case, project, capsys):
    conf = str(project / "conf")
    assert _pipeline_until_failure(capsys, conf) == (0, "")
    prepared = tree_digest(project / "data" / "prepared")
    validated = tree_digest(project / "data" / "validated")
    snapshots = tree_digest(project / "data" / "raw" / "snapshots")

    broken = project / "broken"
    broken.mkdir()
    source_settings = case.write(broken)
    pipeline = yaml.safe_load((project / "conf" / "pipeline.yaml").read_text())
    pipeline["data"]["source"].update(source_settings)
    pipeline["validation"].update(case.validation)
    (project / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))

    code, message = _pipeline_until_failure(capsys, conf)
    assert code == case.exit_code, message
    assert message.startswith("error: ") and "Traceback" not in message
    if case.names_file:
        assert str(broken) in message, message
    for fragment in case.fragments:
        assert fragment in message, message
    for series in case.series:
        assert repr(series) in message or series in message, message

    assert tree_digest(project / "data" / "prepared") == prepared
    assert tree_digest(project / "data" / "validated") == validated
    after = tree_digest(project / "data" / "raw" / "snapshots")
    assert {k: v for k, v in after.items() if k in snapshots} == snapshots
    assert not list(project.rglob("pwned"))


def test_rows_out_of_time_order_are_put_in_order_not_refused(project, capsys):
    """Shuffled rows are a layout, not a defect: ingest writes the same snapshot as for sorted rows."""
    conf = str(project / "conf")
    assert _pipeline_until_failure(capsys, conf) == (0, "")
    manifest = project / "data" / "raw" / "manifest.json"
    sorted_md5 = json.loads(manifest.read_text())["md5"]
    source = project / "input" / "sales.csv"
    pd.read_csv(source).sample(frac=1.0, random_state=3).to_csv(source, index=False)
    assert _pipeline_until_failure(capsys, conf) == (0, "")
    assert json.loads(manifest.read_text())["md5"] == sorted_md5
