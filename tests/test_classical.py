"""AutoETS and AutoTheta: fitted on train + validation, scored beside the others, never registered."""

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS

import seqpipe.steps as steps
from seqpipe.config import load_config
from seqpipe.data.prepare import load_prepared
from tests.conftest import write_config


def test_classical_references_join_the_leaderboard_and_register_skips_them(project, capsys):
    conf = write_config(project, models=["naive", "auto_ets", "auto_theta"])
    for arch in ("naive", "auto_ets", "auto_theta"):
        (conf / "models" / f"{arch}.yaml").write_text(f"arch: {arch}\n")
    cfg = load_config(conf)
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    steps.train_all(cfg)
    board = steps.evaluate(cfg)

    assert set(board["model"]) == {"naive", "auto_ets", "auto_theta"}
    assert np.isfinite(board[["mase", "smape", "mape"]].to_numpy()).all()
    # Strongly seasonal data: both seasonal references must beat the flat last value.
    naive = board.set_index("model").loc["naive", "mase"]
    assert board.set_index("model").loc[["auto_ets", "auto_theta"], "mase"].max() < naive

    # The stored forecast is AutoETS fitted on exactly the train + validation rows of each series.
    prepared = load_prepared(steps.Layout.of(cfg).prepared)
    first = prepared.scalers.series_ids[0]
    rows = prepared.frame[(prepared.frame["series_id"] == first) & (prepared.frame["split"] != "test")]
    direct = StatsForecast(models=[AutoETS(season_length=prepared.spec.season)], freq=1).forecast(
        df=pd.DataFrame({"unique_id": first, "ds": np.arange(len(rows)), "y": rows["value"].to_numpy()}),
        h=prepared.spec.horizon)["AutoETS"].to_numpy()
    stored = np.load(steps.Layout.of(cfg).models / "auto_ets" / steps.CLASSICAL_FORECASTS)
    np.testing.assert_allclose(stored[0], direct, rtol=1e-9)
    forecasts = pd.read_parquet(steps.Layout.of(cfg).evaluation / "forecasts.parquet")
    assert len(forecasts[forecasts["model"] == "auto_ets"]) == stored.size

    capsys.readouterr()
    steps.register(cfg)
    out = capsys.readouterr().out
    assert board.iloc[0]["arch"] in {"auto_ets", "auto_theta"}
    assert "cannot be registered; registering naive" in out
    assert "(naive, test" in out
