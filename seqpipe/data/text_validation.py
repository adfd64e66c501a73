"""Great Expectations 1.x validation of a canonical text frame (task: classify, text).

Two GX batches, reported with ``seqpipe.data.sequence_validation``'s check and report
classes, so the validate step and its failure message treat texts like sequences:

- ``texts``: the canonical frame, one row per text, with derived ``chars`` and
  ``stripped_chars`` columns: the columns exist, ids are present and unique, a text is
  present, not empty once its surrounding whitespace is stripped and at most
  ``classify.text.max_chars`` long, labels are present and in the class set, and the
  dataset's own split (where it has one) names only train and test;
- ``classes``: one row per class: the texts the split puts in training (the split of
  ``seqpipe.data.text_prepare.split_texts``, run on this very batch).

Failures name the offending texts' ids (or classes) and the rule with its config key.
Texts found, identical once stripped, in both the training and the test split are
reported (``duplicates``), not failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqpipe.config import SequenceSplitConfig, SequenceValidationConfig, TextConfig
from seqpipe.data.sequence_validation import (
    CLASS, DuplicateGroup, SequenceCheck, SequenceValidationReport, _default, _rule, _SequenceValidator,
)
from seqpipe.data.text_prepare import split_texts
from seqpipe.data.texts import LABEL, OWN_SPLITS, SEQUENCE_ID, SPLIT, TEXT, TEXT_COLUMNS
from seqpipe.data.validation import gx, gxe

CHARS, STRIPPED_CHARS = "chars", "stripped_chars"
TRAIN_TEXTS = "train_texts"


@dataclass(frozen=True)
class TextRules:
    """What the suites check, from ``classify.validation``, ``classify.split`` and ``classify.text``."""

    classes: tuple[str, ...] | None = None
    min_per_class: int = _default(SequenceValidationConfig, "min_per_class")
    max_chars: int = _default(TextConfig, "max_chars")
    # The split whose training part min_per_class counts, and whose test part duplicates are sought in.
    test_share: float = _default(SequenceSplitConfig, "test_share")
    validation_share: float = _default(SequenceSplitConfig, "validation_share")
    seed: int = _default(SequenceSplitConfig, "seed")

    def __post_init__(self) -> None:
        if self.classes is not None:  # a config dump gives a list: the rules stay immutable
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @classmethod
    def from_config(cls, validation: SequenceValidationConfig, split: SequenceSplitConfig,
                    text: TextConfig) -> TextRules:
        return cls(classes=None if validation.classes is None else tuple(validation.classes),
                   min_per_class=validation.min_per_class, max_chars=text.max_chars,
                   test_share=split.test_share, validation_share=split.validation_share, seed=split.seed)

    @property
    def split(self) -> SequenceSplitConfig:
        return SequenceSplitConfig(test_share=self.test_share, validation_share=self.validation_share, seed=self.seed)


def _texts_suite(rules: TextRules, own_split: bool) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="texts")
    for column in TEXT_COLUMNS:
        suite.add_expectation(_rule(gxe.ExpectColumnToExist(column=column), "the canonical text columns exist"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeUnique(column=SEQUENCE_ID),
                                "each text has its own id (classify.source.columns.sequence_id)"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToNotBeNull(column=TEXT),
                                "every row has a text (classify.source.columns.text)"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeBetween(column=STRIPPED_CHARS, min_value=1),
                                "a text is not empty once surrounding whitespace is stripped"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeBetween(column=CHARS, max_value=rules.max_chars),
                                f"a text has at most {rules.max_chars} characters (classify.text.max_chars)"))
    suite.add_expectation(_rule(gxe.ExpectColumnValuesToNotBeNull(column=LABEL),
                                "every text has a label (a label column or classify.source.labels)"))
    if rules.classes is not None:
        suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(rules.classes)),
                                    f"labels lie in classify.validation.classes {list(rules.classes)}"))
    if own_split:
        suite.add_expectation(_rule(gxe.ExpectColumnValuesToBeInSet(column=SPLIT, value_set=list(OWN_SPLITS)),
                                    f"the dataset's own split names only {list(OWN_SPLITS)}"))
    return suite


def _classes_suite(rules: TextRules, own_split: bool) -> gx.ExpectationSuite:
    split = (f"the dataset's own training texts less validation_share {rules.validation_share}" if own_split else
             f"test_share {rules.test_share}, validation_share {rules.validation_share}")
    suite = gx.ExpectationSuite(name="classes")
    suite.add_expectation(_rule(
        gxe.ExpectColumnValuesToBeBetween(column=TRAIN_TEXTS, min_value=rules.min_per_class),
        f"each class has at least {rules.min_per_class} training texts (classify.validation.min_per_class; "
        f"counted on the split of {split}, seed {rules.seed})"))
    return suite


def text_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The texts with their length in characters, as given and with surrounding whitespace stripped."""
    text = frame[TEXT] if TEXT in frame.columns else pd.Series([None] * len(frame), index=frame.index, dtype=object)
    present = text.where(text.notna(), None)
    chars = present.map(lambda t: len(str(t)) if t is not None else None).astype("Int64")
    stripped = present.map(lambda t: len(str(t).strip()) if t is not None else None).astype("Int64")
    return frame.assign(**{CHARS: chars, STRIPPED_CHARS: stripped})


def class_table(frame: pd.DataFrame, splits: np.ndarray, rules: TextRules) -> pd.DataFrame:
    """One row per class (the configured ones, else those found): its texts, and those in training."""
    labels = frame[LABEL]
    found = labels.dropna()
    classes = list(rules.classes) if rules.classes is not None else sorted(set(found))
    in_train = labels[splits == "train"].dropna()
    return pd.DataFrame({
        CLASS: classes,
        "texts": found.value_counts().reindex(classes, fill_value=0).to_numpy(np.int64),
        TRAIN_TEXTS: in_train.value_counts().reindex(classes, fill_value=0).to_numpy(np.int64),
    })


def duplicate_groups(frame: pd.DataFrame, splits: np.ndarray) -> list[DuplicateGroup]:
    """Texts identical (once stripped) in the training and the test split, by test ids."""
    table = pd.DataFrame({"key": frame[TEXT].map(lambda t: t.strip() if isinstance(t, str) else None),
                          SEQUENCE_ID: frame[SEQUENCE_ID].to_numpy(dtype=object), SPLIT: splits})
    table = table[table["key"].notna() & table[SPLIT].isin(["train", "test"])]
    # Only texts found in both splits are grouped: grouping every text costs seconds on real corpora.
    shared = set(table.loc[table[SPLIT] == "train", "key"]) & set(table.loc[table[SPLIT] == "test", "key"])
    groups = []
    for _, members in table[table["key"].isin(shared)].groupby("key", sort=False):
        by_split = members.groupby(SPLIT)[SEQUENCE_ID].apply(sorted).to_dict()
        groups.append(DuplicateGroup(train=by_split["train"], test=by_split["test"]))
    return sorted(groups, key=lambda group: group.test)


def splittable(frame: pd.DataFrame) -> bool:
    """Whether ``split_texts`` can run: the columns exist, ids are present and unique, the own split is known."""
    if frame.empty or not all(c in frame.columns for c in TEXT_COLUMNS):
        return False
    ids = frame[SEQUENCE_ID]
    if ids.isna().any() or ids.duplicated().any():
        return False
    return SPLIT not in frame.columns or frame[SPLIT].isin(OWN_SPLITS).all()


def validate_texts(frame: pd.DataFrame, *, dataset: str, source: str, rules: TextRules,
                   docs_dir: Path | None = None) -> SequenceValidationReport:
    """Run the suites on ``frame`` (canonical text frame); ``docs_dir`` receives GX Data Docs when given."""
    validator = _SequenceValidator(docs_dir)
    own_split = SPLIT in frame.columns
    rows = text_table(frame)
    if SEQUENCE_ID in frame.columns:
        checks = validator.run_keyed("texts", rows, _texts_suite(rules, own_split), SEQUENCE_ID, "sequences")
    else:  # no failure can name a text: key the rows by position instead
        checks = validator.run_keyed("texts", rows.assign(row=np.arange(len(rows))), _texts_suite(rules, own_split),
                                     "row", "rows")
    classes: dict[str, int] = {}
    duplicates: list[DuplicateGroup] = []
    if splittable(frame):
        frame = frame.sort_values(SEQUENCE_ID, kind="stable").reset_index(drop=True)
        splits = split_texts(frame, rules.split)
        checks += validator.run_keyed("classes", class_table(frame, splits, rules), _classes_suite(rules, own_split),
                                      CLASS, "classes")
        classes = {str(k): int(v) for k, v in frame[LABEL].dropna().value_counts().sort_index().items()}
        duplicates = duplicate_groups(frame, splits)
    else:
        checks.append(SequenceCheck("expect_splittable_texts", "table", False, 0, [], table="classes",
                                    error="the texts cannot be split (no rows, a canonical column missing, ids "
                                          "missing or repeated, or an unknown own split), so training texts per "
                                          "class were not counted",
                                    rule="each class has enough training texts (classify.validation.min_per_class)"))
    return SequenceValidationReport(
        success=all(c.success for c in checks),
        dataset=dataset,
        source=source,
        rows=len(frame),
        sequences=int(frame[SEQUENCE_ID].nunique()) if SEQUENCE_ID in frame.columns else 0,
        classes=classes,
        rules=rules,  # type: ignore[arg-type]  # the report holds the rules it was checked by, text or sequence
        checks=checks,
        duplicates=duplicates,
    )
