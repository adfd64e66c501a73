"""The n-grams the linear text models count, as strings: a text's features before any weighting.

Three sources, each its own namespace so that they never collide:

- token n-grams: the tokenizer's ids of a text's real steps (channel 0), ``"12"`` for a
  word and ``"12_40"`` for a bigram;
- word n-grams of the text (``"w:film"``, ``"w:good film"``): the words of two or more
  letters or digits in each text's normalised characters, scikit-learn's default token
  pattern ``(?u)\\b\\w\\w+\\b``, so punctuation and one-character words are left out;
- character n-grams (``"c: fi"``): scikit-learn's ``char_wb`` analyzer, the n-grams inside
  each whitespace-separated word padded by one space on each side, a word shorter than
  ``n`` counted once whole.

The characters are the batch's ``texts``: each text normalised by its tokenizer and cut
where its last kept token ends, so they follow the same truncation rule as the ids.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from seqpipe.estimators.classification import SequenceBatch
from seqpipe.hyperparams import TextNgramParams

# Joins an n-gram's token ids into its name: "12_40".
GRAM_SEPARATOR = "_"
WORD_PREFIX, CHAR_PREFIX = "w:", "c:"
WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")
# Words repeat (Zipf): each distinct word's character n-grams are computed once per range.
CHAR_CACHE_WORDS = 2 ** 18


def text_grams(ids: np.ndarray, ngram_max: int) -> list[str]:
    """The n-grams of one text's token ids, 1 to ``ngram_max`` tokens long, as strings: words first, in order."""
    return _joined([str(int(token)) for token in ids], ngram_max, GRAM_SEPARATOR, "")


def batch_grams(batch: SequenceBatch, ngram_max: int) -> list[list[str]]:
    """Each text's token n-grams, read from its real steps' token ids (channel 0, rounded)."""
    ids = np.rint(batch.x[..., 0]).astype(np.int64)
    return [text_grams(ids[i, : int(length)], ngram_max) for i, length in enumerate(batch.lengths)]


def word_grams(text: str, ngram_max: int) -> list[str]:
    """The word n-grams of a normalised text, 1 to ``ngram_max`` words long, each prefixed ``w:``."""
    return _joined(WORD_PATTERN.findall(text.lower()), ngram_max, " ", WORD_PREFIX)


def char_grams(text: str, shortest: int, longest: int) -> list[str]:
    """The ``char_wb`` n-grams of a text, ``shortest`` to ``longest`` characters, each prefixed ``c:``."""
    grams: list[str] = []
    for word in text.lower().split():
        grams.extend(_word_char_grams(word, shortest, longest))
    return grams


@lru_cache(maxsize=CHAR_CACHE_WORDS)
def _word_char_grams(word: str, shortest: int, longest: int) -> tuple[str, ...]:
    padded = f" {word} "
    grams = []
    for n in range(shortest, longest + 1):
        if len(padded) <= n:  # a short word is counted once, whole
            grams.append(CHAR_PREFIX + padded)
            break
        grams.extend(CHAR_PREFIX + padded[i:i + n] for i in range(len(padded) - n + 1))
    return tuple(grams)


def document_grams(batch: SequenceBatch, params: TextNgramParams, arch: str) -> list[list[str]]:
    """Each text's n-grams as ``params`` asks: its word n-grams (of tokens or of the text), then its characters'."""
    if not params.reads_characters:
        return batch_grams(batch, params.ngram_max)
    if batch.texts is None or len(batch.texts) != len(batch):
        raise ValueError(f"{arch} with words: {params.words} and char_ngram_max {params.char_ngram_max} reads each "
                         f"text's characters, which this batch does not carry: it reads batches of texts prepared "
                         f"by the text task's tokenizer")
    words = (batch_grams(batch, params.ngram_max) if params.words == "tokens"
             else [word_grams(text, params.ngram_max) for text in batch.texts])
    if not params.char_ngram_max:
        return words
    return [grams + char_grams(text, params.char_ngram_min, params.char_ngram_max)
            for grams, text in zip(words, batch.texts, strict=True)]


def is_char_gram(gram: str) -> bool:
    return gram.startswith(CHAR_PREFIX)


def _joined(words: list[str], ngram_max: int, separator: str, prefix: str) -> list[str]:
    """``words`` and their n-grams up to ``ngram_max``, joined by ``separator``, words first, in order."""
    grams = [prefix + word for word in words]
    for n in range(2, ngram_max + 1):
        grams.extend(prefix + separator.join(words[i:i + n]) for i in range(len(words) - n + 1))
    return grams
