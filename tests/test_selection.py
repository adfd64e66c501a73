"""Choose on validation, report on test: the test window's values cannot change which model is registered."""

import numpy as np
import pandas as pd
import yaml

from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.tracking.registry import CHALLENGER, alias_version
from seqpipe.tracking.store import connect
from tests.conftest import HORIZON, train_all


def _pipeline_until_register(cfg) -> tuple[pd.DataFrame, str]:
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    board = steps.evaluate(cfg)
    version = steps.register(cfg)
    client, _ = connect(cfg)
    assert alias_version(client, cfg.tracking.registered_model, CHALLENGER) == version
    return board, client.get_model_version(cfg.tracking.registered_model, version).tags["seqpipe.model"]


def _flatten_test_windows(path) -> None:
    """Every series' test window becomes its last point before the test: what the naive forecast says."""
    sales = pd.read_csv(path)
    for _, rows in sales.groupby("store").groups.items():
        rows = np.asarray(rows)
        sales.loc[rows[-HORIZON:], "sales"] = sales.loc[rows[-HORIZON - 1], "sales"]
    sales.to_csv(path, index=False)


def test_the_champion_is_chosen_on_validation_and_the_test_window_only_reports(project):
    (project / "conf" / "models" / "naive.yaml").write_text("arch: naive\nparams: {}\n")
    conf = project / "conf"
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["naive", "seasonal_naive"]
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(conf)

    seasonal, registered = _pipeline_until_register(cfg)
    assert registered == "seasonal_naive"
    assert list(seasonal["model"]) == ["seasonal_naive", "naive"]
    assert {"val_mase", "mase"} <= set(seasonal.columns)

    # Only the test window changes, in the source file, and then the pipeline runs again from ingest.
    _flatten_test_windows(project / "input" / "sales.csv")
    flat, registered = _pipeline_until_register(cfg)
    by_model = flat.set_index("model")
    # The test split now prefers naive by far: ranking on it would register naive.
    assert by_model.loc["naive", "mase"] < 0.01 < by_model.loc["seasonal_naive", "mase"]
    assert registered == "seasonal_naive"
    assert flat.iloc[0]["model"] == "seasonal_naive"
    validation = [c for c in flat.columns if c.startswith("val_")]
    pd.testing.assert_frame_equal(seasonal.set_index("model")[validation], by_model.loc[seasonal["model"], validation])
