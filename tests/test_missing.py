import numpy as np
import pandas as pd

from seqpipe.data.missing import fill_missing


def _frame(values_by_series):
    rows = [pd.DataFrame({"series_id": sid, "timestamp": np.arange(len(v)), "value": np.array(v, dtype=float)})
            for sid, v in values_by_series.items()]
    return pd.concat(rows, ignore_index=True)


def test_fills_never_cross_series_and_respect_the_run_limit():
    nan = np.nan
    frame = _frame({"a": [1, nan, 3, nan, nan, nan, 7], "b": [nan, 10, nan, 30]})
    linear = fill_missing(frame, "linear", limit=2)["value"].to_numpy()
    np.testing.assert_allclose(linear, [1, 2, 3, nan, nan, nan, 7, nan, 10, 20, 30])
    ffill = fill_missing(frame, "ffill")["value"].to_numpy()
    # b's first value has nothing before it in b: a's last value must not leak in.
    np.testing.assert_allclose(ffill, [1, 1, 3, 3, 3, 3, 7, nan, 10, 10, 30])
    assert fill_missing(frame, "none") is frame
