"""Great Expectations 1.x validation of a canonical batch, with a suite built from config.

Two GX batches are validated: the observations themselves, and one row per series
(its length), because GX has no per-group length expectation and a derived table
keeps the check inside GX where its result is reported like every other.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402

from seqpipe.data import CANONICAL_COLUMNS  # noqa: E402

# A value beyond the largest finite float is +/-inf: "between" these bounds means finite.
FINITE_BOUND = sys.float_info.max


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    target: str
    success: bool
    unexpected_count: int
    offending_series: list[str]
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.expectation}({self.target}): could not run: {self.error}"
        return (
            f"{self.expectation}({self.target}): {self.unexpected_count} unexpected, "
            f"series {self.offending_series}"
        )


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    dataset: str  # the snapshot's MD5
    source: str
    rows: int
    series: int
    min_length: int
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure_message(self, where: str) -> str:
        lines = [f"validation failed for {where} (source {self.source}): {len(self.failed)} of {len(self.checks)} expectations broken"]
        lines += [f"  - {check.describe()}" for check in self.failed]
        return "\n".join(lines)


def _observation_suite() -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="observations")
    for column in CANONICAL_COLUMNS:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="value", min_value=-FINITE_BOUND, max_value=FINITE_BOUND)
    )
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["series_id", "timestamp"]))
    return suite


def _series_suite(min_length: int) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="series")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="length", min_value=min_length))
    return suite


def _run_suite(context: Any, name: str, frame: pd.DataFrame, suite: gx.ExpectationSuite, max_listed: int) -> list[CheckResult]:
    asset = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["series_id"]}
    )
    checks = []
    for item in result.results:
        cfg = item.expectation_config
        kwargs = cfg.kwargs
        target = kwargs.get("column") or ", ".join(kwargs.get("column_list", []))
        rows = item.result.get("unexpected_index_list") or []
        offending = list(dict.fromkeys(str(row.get("series_id")) for row in rows if isinstance(row, dict)))
        error = None
        if item.exception_info and item.exception_info.get("raised_exception"):
            error = str(item.exception_info.get("exception_message", "")).splitlines()[0]
        checks.append(
            CheckResult(
                expectation=cfg.type,
                target=target,
                success=bool(item.success),
                unexpected_count=int(item.result.get("unexpected_count") or 0),
                offending_series=offending[:max_listed],
                error=error,
            )
        )
    return checks


def _quiet_context() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def validate_frame(frame: pd.DataFrame, *, dataset: str, source: str, min_length: int, max_listed: int = 10) -> ValidationReport:
    context = _quiet_context()
    checks = _run_suite(context, "observations", frame, _observation_suite(), max_listed)
    if "series_id" in frame.columns:
        lengths = frame.groupby("series_id", sort=True).size().rename("length").reset_index()
        checks += _run_suite(context, "series", lengths, _series_suite(min_length), max_listed)
    return ValidationReport(
        success=all(c.success for c in checks),
        dataset=dataset,
        source=source,
        rows=len(frame),
        series=int(frame["series_id"].nunique()) if "series_id" in frame.columns else 0,
        min_length=min_length,
        checks=checks,
    )
