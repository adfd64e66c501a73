"""Great Expectations 1.x validation of a canonical sequence frame (task: classify).

GX has no per-group expectations, so, as for forecasting (``seqpipe.data.validation``),
the rules about whole sequences and classes are checked by GX on derived tables,
reported like every other expectation:

- ``steps``: the canonical frame itself, one row per step: the columns exist, ids, steps
  and labels are present, labels lie in the class set, channels are finite floats within
  the configured bounds, (sequence_id, step) is unique;
- ``sequences``: one row per sequence: its length, the number of distinct labels it
  carries, steps skipped in its 0 .. length - 1 numbering, and the fewest channels any of
  its steps has (a channel missing from one source file shows here, naming the sequence);
- ``classes``: one row per class: the sequences the split puts in training (the
  split of ``seqpipe.data.sequence_prepare``, run on this very batch, not an estimate);
- ``channels``: one row per channel column, whose count must equal
  ``classify.validation.channels`` when set (a table-level check).

Failures name the offending sequences (or classes). Sequences whose values appear in
both the training and the test split are reported, not failed: ``duplicates``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqpipe.config import SequenceSplitConfig, SequenceValidationConfig
from seqpipe.data.sequence_prepare import split_sequences
from seqpipe.data.sequences import LABEL, SEQUENCE_ID, STEP, SequenceLayout, channel_columns
from seqpipe.data.validation import CheckResult, _numeric_expectations, _Validator, gx, gxe

CLASS = "class"
# The rules behind forecasting's numeric expectations, as they read for a channel.
CHANNEL_RULES = {
    "expect_column_values_to_not_be_null": "every step has a value in every channel",
    "expect_column_values_to_be_in_type_list": "channels hold float64 numbers",
    "expect_column_values_to_be_between": "channel values are finite (no inf)",
}
HASH_BYTES = 16


def _default(section: type, name: str) -> Any:
    """The config's own default, so the rules and the config never disagree about one."""
    return section.model_fields[name].default


@dataclass(frozen=True)
class SequenceRules:
    """What the suites check, taken from the config (``classify.validation`` and ``classify.split``)."""

    classes: tuple[str, ...] | None = None
    min_per_class: int = _default(SequenceValidationConfig, "min_per_class")
    min_length: int = _default(SequenceValidationConfig, "min_length")
    max_length: int | None = None
    channels: int | None = None
    value_min: float | None = None
    value_max: float | None = None
    # The split whose training part min_per_class counts, and whose test part duplicates are sought in.
    test_share: float = _default(SequenceSplitConfig, "test_share")
    validation_share: float = _default(SequenceSplitConfig, "validation_share")
    seed: int = _default(SequenceSplitConfig, "seed")

    def __post_init__(self) -> None:
        if self.classes is not None:  # a config dump gives a list: the rules stay immutable
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @classmethod
    def from_config(cls, validation: SequenceValidationConfig, split: SequenceSplitConfig,
                    channels: int | None = None) -> SequenceRules:
        """``channels`` (say, the production model's) stands in when the config leaves the count open."""
        return cls(classes=None if validation.classes is None else tuple(validation.classes),
                   min_per_class=validation.min_per_class, min_length=validation.min_length,
                   max_length=validation.max_length, channels=validation.channels or channels,
                   value_min=validation.value_min, value_max=validation.value_max,
                   test_share=split.test_share, validation_share=split.validation_share, seed=split.seed)

    @property
    def split(self) -> SequenceSplitConfig:
        return SequenceSplitConfig(test_share=self.test_share, validation_share=self.validation_share, seed=self.seed)


@dataclass(frozen=True)
class SequenceCheck(CheckResult):
    """A check's outcome; ``offending_series`` holds sequence ids (or, for the class table, classes)."""

    unit: str = "sequences"  # what offending_series names
    table: str = "steps"  # the GX batch checked: steps, sequences, classes or channels
    rule: str = ""  # the rule in words, with the config key that sets it

    @property
    def offending(self) -> list[str]:
        return self.offending_series

    @property
    def quarantinable(self) -> bool:
        # A class or channel cannot be set aside the way a sequence can.
        return self.unit == "sequences" and super().quarantinable

    def describe(self, max_listed: int) -> str:
        rule = f" [{self.rule}]" if self.rule else ""
        if self.error:
            return f"{self.expectation}({self.target}): could not run: {self.error}{rule}"
        shown = self.offending_series[:max_listed]
        more = f" and {len(self.offending_series) - len(shown)} more" if len(self.offending_series) > len(shown) else ""
        if self.observed is not None and not self.offending_series:
            return f"{self.expectation}({self.target}): observed {self.observed}{rule}"
        counted = " steps" if self.table == "steps" else ""
        where = f", {self.unit} {shown}{more}" if shown else ""
        return f"{self.expectation}({self.target}): {self.unexpected_count} unexpected{counted}{where}{rule}"


@dataclass(frozen=True)
class DuplicateGroup:
    """Sequences with identical values (labels aside) in the training and the test split."""

    train: list[str]
    test: list[str]


@dataclass(frozen=True)
class SequenceValidationReport:
    success: bool
    dataset: str  # the snapshot's MD5
    source: str
    rows: int
    sequences: int
    classes: dict[str, int]  # sequences per label found (missing labels not counted)
    rules: SequenceRules
    checks: list[SequenceCheck] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)

    @property
    def failed(self) -> list[SequenceCheck]:
        return [c for c in self.checks if not c.success]

    @property
    def duplicated_test_ids(self) -> list[str]:
        """Test sequences whose values a training sequence repeats."""
        return sorted(i for group in self.duplicates for i in group.test)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure_message(self, where: str, max_listed: int) -> str:
        lines = [f"validation failed for {where} (source {self.source}): "
                 f"{len(self.failed)} of {len(self.checks)} expectations broken"]
        lines += [f"  - {check.describe(max_listed)}" for check in self.failed]
        return "\n".join(lines)


def _rule(expectation: Any, text: str) -> Any:
    """``expectation`` carrying its rule in words, which the report and Data Docs show."""
    expectation.meta = {**(expectation.meta or {}), "rule": text}
    return expectation


def _steps_suite(rules: SequenceRules, channels: list[str], text: frozenset[str]) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="steps")
    for column in (SEQUENCE_ID, STEP, *channels, LABEL):
        suite.add_expectation(_rule(gxe.ExpectColumnToExist(column=column), "the canonical sequence columns exist"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToNotBeNull(column=SEQUENCE_ID), "every step has a sequence id"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToNotBeNull(column=STEP), "every step has a step number"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeInTypeList(column=STEP, type_list=["int64", "Int64"]),
                                "steps are integers"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeBetween(column=STEP, min_value=0),
                                "steps count from 0"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToNotBeNull(column=LABEL),
                                "every sequence has a label (a label column or classify.source.labels)"))
    if rules.classes is not None:
        suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(rules.classes)),
                                    f"labels lie in classify.validation.classes {list(rules.classes)}"))
    for column in channels:
        for expectation in _numeric_expectations(column, is_text=column in text):
            suite.add_expectation(_rule(expectation, CHANNEL_RULES[expectation.expectation_type]))
        if (rules.value_min is not None or rules.value_max is not None) and column not in text:
            suite.add_expectation(_rule(
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=rules.value_min, max_value=rules.value_max),
                f"channel values lie in [{rules.value_min}, {rules.value_max}] "
                "(classify.validation.value_min, value_max)"))
    suite.add_expectation(_rule(gxe.ExpectCompoundColumnsToBeUnique(column_list=[SEQUENCE_ID, STEP]),
                                "no step of a sequence repeats"))
    return suite


def _sequences_suite(rules: SequenceRules, channels: int) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="sequences")
    bounds = (f"at least {rules.min_length}" if rules.max_length is None
              else f"{rules.min_length} to {rules.max_length}")
    suite.add_expectation(_rule(
        gxe.ExpectColumnValuesToBeBetween(column="length", min_value=rules.min_length, max_value=rules.max_length),
        f"a sequence has {bounds} steps (classify.validation.min_length, max_length)"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeBetween(column="labels", min_value=1, max_value=1),
                                "all steps of a sequence carry the same label"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeBetween(column="skipped_steps", min_value=0, max_value=0),
                                "a sequence's steps are numbered 0 .. length - 1 without gaps"))
    suite.add_expectation(_rule(
        gxe.ExpectColumnValuesToBeBetween(column="min_channels", min_value=channels, max_value=channels),
        f"every step has a value in all {channels} channels"))
    return suite


def _classes_suite(rules: SequenceRules) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="classes")
    suite.add_expectation(_rule(
        gxe.ExpectColumnValuesToBeBetween(column="train_sequences", min_value=rules.min_per_class),
        f"each class has at least {rules.min_per_class} training sequences (classify.validation.min_per_class; "
        f"counted on the split with test_share {rules.test_share}, validation_share {rules.validation_share}, "
        f"seed {rules.seed})"))
    return suite


def _channels_suite(expected: int) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="channels")
    suite.add_expectation(_rule(gxe.ExpectTableRowCountToEqual(value=expected),
                                f"the data has {expected} channel columns (classify.validation.channels)"))
    return suite


def sequence_table(frame: pd.DataFrame, channels: list[str]) -> pd.DataFrame:
    """One row per sequence: length, distinct labels, skipped step numbers, fewest channels of a step."""
    ids = frame[SEQUENCE_ID]
    grouped = frame.groupby(SEQUENCE_ID, sort=True)
    steps = pd.to_numeric(frame[STEP], errors="coerce").groupby(ids, sort=True)
    present = frame[channels].notna().sum(axis=1).groupby(ids, sort=True)
    table = pd.DataFrame({
        "length": grouped.size(),
        # A missing label counts as one: the label check names it, this check names mixtures.
        "labels": grouped[LABEL].nunique(dropna=False),
        "skipped_steps": steps.max() + 1 - grouped.size(),
        "min_channels": present.min(),
    })
    return table.rename_axis(SEQUENCE_ID).reset_index()


def sequence_labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The sorted sequence ids and each one's label (read on its first step; None when missing)."""
    layout = SequenceLayout.of(frame)
    labels = layout.first_rows(frame[LABEL])
    return layout.ids, np.array([None if pd.isna(label) else str(label) for label in labels], dtype=object)


def class_table(ids: np.ndarray, labels: np.ndarray, rules: SequenceRules) -> pd.DataFrame:
    """One row per class (the configured ones, else those found): its sequences, and those in training."""
    splits = split_sequences(ids, labels, rules.split)
    found = pd.Series(labels).dropna()
    classes = list(rules.classes) if rules.classes is not None else sorted(set(found))
    in_train = pd.Series(labels[splits == "train"]).dropna()
    return pd.DataFrame({
        CLASS: classes,
        "sequences": found.value_counts().reindex(classes, fill_value=0).to_numpy(np.int64),
        "train_sequences": in_train.value_counts().reindex(classes, fill_value=0).to_numpy(np.int64),
    })


def duplicate_groups(frame: pd.DataFrame, channels: list[str], ids: np.ndarray, labels: np.ndarray,
                     rules: SequenceRules) -> list[DuplicateGroup]:
    """Sequences whose values (every channel of every step) are the same in training and in test."""
    layout = SequenceLayout.of(frame)
    values = frame[channels].to_numpy(np.float64)
    digests = [hashlib.blake2b(np.ascontiguousarray(part).tobytes(), digest_size=HASH_BYTES).hexdigest()
               for part in layout.split_values(values)]
    splits = split_sequences(ids, labels, rules.split)
    table = pd.DataFrame({"digest": digests, SEQUENCE_ID: ids, "split": splits})
    groups = []
    for _, members in table[table["split"].isin(["train", "test"])].groupby("digest", sort=False):
        by_split = members.groupby("split")[SEQUENCE_ID].apply(sorted).to_dict()
        if "train" in by_split and "test" in by_split:
            groups.append(DuplicateGroup(train=by_split["train"], test=by_split["test"]))
    return sorted(groups, key=lambda group: group.test)


class _SequenceValidator(_Validator):
    """The forecasting validator's context and Data Docs, with results keyed by sequence (or class)."""

    def run_keyed(self, name: str, frame: pd.DataFrame, suite: gx.ExpectationSuite, key: str,
                  unit: str) -> list[SequenceCheck]:
        asset = self.context.data_sources.add_pandas(name).add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe(name)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=self.context.suites.add(suite))
        )
        result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [key]}
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=self.actions, result_format=result_format,
        ))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        return [check for result in outcome.run_results.values() for check in _checks(result, name, key, unit)]


def _checks(result: Any, table: str, key: str, unit: str) -> list[SequenceCheck]:
    checks = []
    for item in result.results:
        config = item.expectation_config
        kwargs = config.kwargs
        rows = item.result.get("unexpected_index_list") or []
        offending = list(dict.fromkeys(str(row.get(key)) for row in rows if isinstance(row, dict)))
        error = None
        if item.exception_info and item.exception_info.get("raised_exception"):
            error = str(item.exception_info.get("exception_message", "")).splitlines()[0]
        checks.append(SequenceCheck(
            expectation=config.type,
            target=kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or table,
            success=bool(item.success),
            unexpected_count=int(item.result.get("unexpected_count") or 0),
            offending_series=offending,
            error=error,
            observed=None if item.result.get("observed_value") is None else str(item.result["observed_value"]),
            unit=unit,
            table=table,
            rule=(config.meta or {}).get("rule", ""),
        ))
    return checks


def validate_sequences(frame: pd.DataFrame, *, dataset: str, source: str, rules: SequenceRules,
                       docs_dir: Path | None = None) -> SequenceValidationReport:
    """Run the suites on ``frame`` (canonical order); ``docs_dir`` receives GX Data Docs when given."""
    validator = _SequenceValidator(docs_dir)
    channels = channel_columns(frame)
    text = frozenset(c for c in channels if not pd.api.types.is_numeric_dtype(frame[c]))
    structural = all(c in frame.columns for c in (SEQUENCE_ID, STEP, LABEL)) and not frame.empty
    key = SEQUENCE_ID if SEQUENCE_ID in frame.columns else None
    checks = (validator.run_keyed("steps", frame, _steps_suite(rules, channels, text), key, "sequences") if key else
              _checks_without_ids(validator, frame, rules, channels, text))
    if not channels:
        checks.append(SequenceCheck("expect_channel_columns", "table", False, 0, [],
                                    error="no channel columns besides sequence_id, step and label",
                                    rule="a sequence frame has at least one channel"))
    duplicates: list[DuplicateGroup] = []
    classes: dict[str, int] = {}
    if structural and channels and frame[SEQUENCE_ID].notna().all():
        frame = frame.sort_values([SEQUENCE_ID, STEP], kind="stable").reset_index(drop=True)
        table = sequence_table(frame, channels)
        checks += validator.run_keyed("sequences", table, _sequences_suite(rules, len(channels)),
                                      SEQUENCE_ID, "sequences")
        ids, labels = sequence_labels(frame)
        per_class = class_table(ids, labels, rules)
        checks += validator.run_keyed("classes", per_class, _classes_suite(rules), CLASS, "classes")
        classes = {str(k): int(v) for k, v in pd.Series(labels).dropna().value_counts().sort_index().items()}
        duplicates = duplicate_groups(frame, channels, ids, labels, rules)
    if rules.channels is not None:
        checks += validator.run_keyed("channels", pd.DataFrame({"channel": channels}), _channels_suite(rules.channels),
                                      "channel", "channels")
    return SequenceValidationReport(
        success=all(c.success for c in checks),
        dataset=dataset,
        source=source,
        rows=len(frame),
        sequences=int(frame[SEQUENCE_ID].nunique()) if SEQUENCE_ID in frame.columns else 0,
        classes=classes,
        rules=rules,
        checks=checks,
        duplicates=duplicates,
    )


def _checks_without_ids(validator: _SequenceValidator, frame: pd.DataFrame, rules: SequenceRules,
                        channels: list[str], text: frozenset[str]) -> list[SequenceCheck]:
    """Without a sequence id column no failure can name a sequence: key the steps by row instead."""
    keyed = frame.assign(**{"row": np.arange(len(frame))})
    return validator.run_keyed("steps", keyed, _steps_suite(rules, channels, text), "row", "rows")
