"""Great Expectations 1.x validation of a canonical batch, with suites built from config.

Two GX batches are validated: the observations themselves, and one row per series
(its length and the regularity of its time steps), because GX has no per-group
expectations and a derived table keeps those checks inside GX, reported like every
other. Each run can also render GX Data Docs (HTML) into a folder.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqpipe.environment import apply_quiet_defaults

apply_quiet_defaults()  # GX reads GX_ANALYTICS_ENABLED when it is imported, below

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402

from seqpipe.data import CANONICAL_COLUMNS  # noqa: E402
from seqpipe.data.frequency import expected_next, infer_frequency, is_calendar, on_grid  # noqa: E402

# A value beyond the largest finite float is +/-inf: "between" these bounds means finite.
FINITE_BOUND = sys.float_info.max
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["series_id"]}
DOCS_SITE = "seqpipe"
# Checks on the whole table name no series: they can never be quarantined away.
TABLE_LEVEL = {"expect_column_to_exist", "expect_table_row_count_to_be_between", "expect_column_values_to_be_in_type_list"}


@dataclass(frozen=True)
class Rules:
    """What the suites check, taken from the config."""

    min_length: int
    allowed_missing_ratio: float = 0.0
    max_gap_ratio: float = 0.0
    value_min: float | None = None
    value_max: float | None = None
    min_rows: int | None = None
    max_rows: int | None = None
    freq: str | None = None  # calendar data without one gets it inferred
    covariates: tuple[str, ...] = ()  # numeric columns beside the value, never missing


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    target: str
    success: bool
    unexpected_count: int
    offending_series: list[str]
    error: str | None = None
    observed: str | None = None  # table-level checks report what they saw (a row count, a dtype)

    @property
    def quarantinable(self) -> bool:
        return not self.success and not self.error and self.expectation not in TABLE_LEVEL and bool(self.offending_series)

    def describe(self, max_listed: int) -> str:
        if self.error:
            return f"{self.expectation}({self.target}): could not run: {self.error}"
        shown = self.offending_series[:max_listed]
        more = f" and {len(self.offending_series) - len(shown)} more" if len(self.offending_series) > len(shown) else ""
        where = f", series {shown}{more}" if shown else ""
        seen = f", observed {self.observed}" if self.observed is not None and not self.offending_series else ""
        return f"{self.expectation}({self.target}): {self.unexpected_count} unexpected{where}{seen}"


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    dataset: str  # the snapshot's MD5
    source: str
    rows: int
    series: int
    rules: Rules
    checks: list[CheckResult] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure_message(self, where: str, max_listed: int) -> str:
        lines = [f"validation failed for {where} (source {self.source}): "
                 f"{len(self.failed)} of {len(self.checks)} expectations broken"]
        lines += [f"  - {check.describe(max_listed)}" for check in self.failed]
        return "\n".join(lines)


def series_table(frame: pd.DataFrame, freq: str | None) -> pd.DataFrame:
    """One row per series: its length, the share of steps that skip periods, and off-grid stamps."""
    ids = frame["series_id"].to_numpy(dtype=object)
    stamps = frame["timestamp"]
    grid = on_grid(frame, freq)
    same_series = ids[1:] == ids[:-1]
    following = stamps.to_numpy()[1:]
    expected = expected_next(stamps.iloc[:-1], freq) if len(frame) > 1 else following
    gap = same_series & grid[1:] & (following > expected)
    steps = pd.DataFrame({"series_id": ids[1:], "gap": gap})[same_series]
    per_series = steps.groupby("series_id", sort=True).agg(gaps=("gap", "sum"), steps=("gap", "size"))
    rows = pd.DataFrame({"series_id": ids, "off_grid": ~grid}).groupby("series_id", sort=True)
    table = pd.concat([rows.size().rename("length"), rows["off_grid"].sum(), per_series], axis=1).fillna(0)
    table["gap_ratio"] = np.where(table["steps"] > 0, table["gaps"] / table["steps"].clip(lower=1), 0.0)
    return table.reset_index().rename(columns={"index": "series_id"})[["series_id", "length", "gap_ratio", "off_grid"]]


def _numeric_expectations(column: str, missing_ratio: float = 0.0, is_text: bool = False) -> list:
    """A float column with finite values, missing in at most ``missing_ratio`` of the rows.

    A column that holds text fails the type check alone: comparing text with numeric
    bounds would only add a second, misleading failure.
    """
    missing = {"mostly": 1 - missing_ratio} if missing_ratio else {}
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, **missing),
        gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=["float64", "Float64"]),
        *([] if is_text else
          [gxe.ExpectColumnValuesToBeBetween(column=column, min_value=-FINITE_BOUND, max_value=FINITE_BOUND)]),
    ]


def _observation_suite(rules: Rules, text_columns: frozenset[str] = frozenset()) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="observations")
    for column in CANONICAL_COLUMNS:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="series_id"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="timestamp"))
    for expectation in _numeric_expectations("value", rules.allowed_missing_ratio):
        suite.add_expectation(expectation)
    # Covariates are never filled: a model reads each one at every step of its history.
    for column in rules.covariates:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
        for expectation in _numeric_expectations(column, is_text=column in text_columns):
            suite.add_expectation(expectation)
    if rules.value_min is not None or rules.value_max is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=rules.value_min, max_value=rules.value_max)
        )
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["series_id", "timestamp"]))
    if rules.min_rows is not None or rules.max_rows is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows))
    return suite


def _series_suite(rules: Rules) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="series")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="length", min_value=rules.min_length))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="gap_ratio", max_value=rules.max_gap_ratio))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="off_grid", max_value=0))
    return suite


def _check_results(result: Any) -> list[CheckResult]:
    checks = []
    for item in result.results:
        config = item.expectation_config
        kwargs = config.kwargs
        rows = item.result.get("unexpected_index_list") or []
        offending = list(dict.fromkeys(str(row.get("series_id")) for row in rows if isinstance(row, dict)))
        error = None
        if item.exception_info and item.exception_info.get("raised_exception"):
            error = str(item.exception_info.get("exception_message", "")).splitlines()[0]
        checks.append(CheckResult(
            expectation=config.type,
            target=kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or "table",
            success=bool(item.success),
            unexpected_count=int(item.result.get("unexpected_count") or 0),
            offending_series=offending,
            error=error,
            observed=None if item.result.get("observed_value") is None else str(item.result["observed_value"]),
        ))
    return checks


class _Validator:
    """One ephemeral GX context per validation; optionally writing Data Docs to a folder."""

    def __init__(self, docs_dir: Path | None) -> None:
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.actions = []
        if docs_dir is not None:
            self.context.add_data_docs_site(site_name=DOCS_SITE, site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
            self.actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])]

    def run(self, name: str, frame: pd.DataFrame, suite: gx.ExpectationSuite) -> list[CheckResult]:
        batch = self.context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=self.context.suites.add(suite))
        )
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=self.actions, result_format=RESULT_FORMAT,
        ))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        return [check for result in outcome.run_results.values() for check in _check_results(result)]


def validate_frame(frame: pd.DataFrame, *, dataset: str, source: str, rules: Rules, docs_dir: Path | None = None) -> ValidationReport:
    if is_calendar(frame) and rules.freq is None:
        rules = Rules(**{**asdict(rules), "freq": infer_frequency(frame)})
    validator = _Validator(docs_dir)
    text = frozenset(c for c in rules.covariates if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c]))
    checks = validator.run("observations", frame, _observation_suite(rules, text))
    if all(c in frame.columns for c in CANONICAL_COLUMNS) and not frame.empty:
        # Without a frequency the gap and grid checks have nothing to measure against
        # (on_grid and expected_next then accept every step); the failure is reported.
        checks += validator.run("series", series_table(frame, rules.freq), _series_suite(rules))
        if is_calendar(frame) and rules.freq is None:
            checks.append(CheckResult("infer_frequency", "timestamp", False, 0, [],
                                      error="no regular calendar frequency could be inferred; set data.freq"))
    return ValidationReport(
        success=all(c.success for c in checks),
        dataset=dataset,
        source=source,
        rows=len(frame),
        series=int(frame["series_id"].nunique()) if "series_id" in frame.columns else 0,
        rules=rules,
        checks=checks,
    )


def quarantine_candidates(report: ValidationReport) -> set[str] | None:
    """The series to set aside, or None when some failure names no series (nothing can be saved)."""
    failed = report.failed
    if not all(check.quarantinable for check in failed):
        return None
    return {series for check in failed for series in check.offending_series}
