import pandas as pd
import pytest

from conftest import make_series, tree_digest
from seqpipe import steps
from seqpipe.config import SourceConfig
from seqpipe.data.snapshot import read_snapshot
from seqpipe.errors import SourceError
from seqpipe.io import md5_file


def test_builtin_tourism_monthly_is_real_and_canonical(cfg):
    manifest = steps.ingest(cfg, SourceConfig(kind="builtin", name="tourism-monthly"))
    frame, _ = read_snapshot(cfg.data_dir / "raw")
    assert (manifest.rows, manifest.series) == (109280, 366)
    assert list(frame.columns) == ["series_id", "timestamp", "value"]
    assert frame.groupby("series_id").size().min() == 91
    assert frame.set_index(["series_id", "timestamp"]).index.is_monotonic_increasing


def test_csv_is_mapped_parsed_and_hashed_like_dvc(cfg):
    manifest = steps.ingest(cfg)
    frame, _ = read_snapshot(cfg.data_dir / "raw")
    assert manifest.series == 8 and manifest.rows == 8 * 60
    assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
    assert frame["series_id"].iloc[0] == "s00"
    snapshot = manifest.snapshot_path(cfg.data_dir / "raw")
    assert snapshot.name == f"{md5_file(snapshot)}.parquet"


def test_missing_value_column_names_file_and_column_and_writes_nothing(cfg, project):
    bad = project / "input" / "no_value.csv"
    make_series().drop(columns="sales").to_csv(bad, index=False)
    with pytest.raises(SourceError) as err:
        steps.ingest(cfg, cfg.data.source.model_copy(update={"path": str(bad)}))
    assert str(bad) in str(err.value) and "'sales' (the value column)" in str(err.value)
    assert not (cfg.data_dir / "raw").exists()


def test_non_numeric_values_name_the_series(cfg, project):
    frame = make_series()
    frame["sales"] = frame["sales"].astype(object)
    frame.loc[frame["store"] == "s03", "sales"] = "twelve"
    bad = project / "input" / "text.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(SourceError, match=r"non-numeric values .*series \['s03'\]"):
        steps.ingest(cfg, cfg.data.source.model_copy(update={"path": str(bad)}))


def test_a_new_ingest_never_rewrites_an_earlier_snapshot(cfg, project):
    first = steps.ingest(cfg)
    before = tree_digest(cfg.data_dir / "raw" / "snapshots")
    other = project / "input" / "other.csv"
    make_series(seed=1).to_csv(other, index=False)
    second = steps.ingest(cfg, cfg.data.source.model_copy(update={"path": str(other)}))
    assert second.md5 != first.md5
    after = tree_digest(cfg.data_dir / "raw" / "snapshots")
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == 2


def test_replacing_an_output_folder_keeps_its_gitignore(tmp_path):
    from seqpipe.io import atomic_dir

    target = tmp_path / "evaluation"
    target.mkdir()
    (target / ".gitignore").write_text("/leaderboard.md\n")
    (target / "old.csv").write_text("old")
    with atomic_dir(target) as staging:
        (staging / "new.csv").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [".gitignore", "new.csv"]
