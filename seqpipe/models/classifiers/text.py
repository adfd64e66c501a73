"""Text classifiers: token ids through an embedding table, then a network over the embeddings.

A text arrives as the numeric classifiers' padded batch ``(batch, length, 2)``: channel 0
holds each step's token id as a float (0 [PAD], 1 [UNK], every id below the shape's
``vocabulary``), the last channel the mask. ``TokenEmbedding`` turns it into embeddings
``(batch, length, embedding_dim)``, zero on padded steps.

The recurrent (``text_rnn``, ``text_lstm``, ``text_gru``) and Transformer
(``text_transformer``) text classifiers reuse the numeric networks unchanged as their
bodies: a body is built for a problem of ``embedding_dim`` channels and reads
``[embeddings, mask]`` exactly as it reads numeric frames, so its own masking, and with
it its padding invariance, carries over. The body's own ``class_weights`` buffer is never
read: the loss, and the class weights it uses, are the text classifier's.

``text_cnn`` (Kim 2014) and ``fasttext`` (Joulin et al. 2017) are built here, and
``text_deep_ensemble`` is the numeric deep ensemble holding text members.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from seqpipe.hyperparams import (
    TEXT_MEMBER_ARCHS,
    FastTextParams,
    RecurrentClassifierParams,
    TextCNNParams,
    TextDeepEnsembleParams,
    TextRecurrentParams,
    TextTransformerParams,
    TransformerClassifierParams,
)
from seqpipe.models.classifiers.attention import TransformerClassifier
from seqpipe.models.classifiers.base import SequenceClassifier, lengths_of, masked_max
from seqpipe.models.classifiers.ensemble import DeepEnsembleClassifier
from seqpipe.models.classifiers.recurrent import GRUClassifier, LSTMClassifier, RNNClassifier
from seqpipe.models.classifiers.shape import ClassifierShape

# The ids every text vocabulary reserves (the tokenizer's convention).
PAD_ID, UNK_ID = 0, 1
# fastText's multiplier for hashing a word n-gram into its buckets.
BIGRAM_HASH_MULTIPLIER = 116_049_371
# Random embeddings start uniform in +-0.25, as Kim (2014) initialised words that have no
# pretrained vector (to match the spread of word2vec's), rather than torch's N(0, 1), four
# times wider: the README's text measurements compare the two.
EMBEDDING_INIT_BOUND = 0.25


class TokenEmbedding(nn.Module):
    """Token ids (channel 0 of a masked batch) to embeddings ``(batch, length, width)``, zero on padding."""

    def __init__(self, vocabulary: int, width: int) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.table = nn.Embedding(vocabulary, width, padding_idx=PAD_ID)
        with torch.no_grad():
            self.table.weight.uniform_(-EMBEDDING_INIT_BOUND, EMBEDDING_INIT_BOUND)
            self.table.weight[PAD_ID].zero_()

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids ``(batch, length)`` int64, [PAD] on every padded step, and the mask ``(batch, length)``."""
        mask = x[..., -1]
        ids = x[..., 0].round().long()
        # An id outside the vocabulary (a text tokenised by another vocabulary) reads as
        # unknown, as an unseen word does, rather than failing the whole batch.
        ids = torch.where((ids >= 0) & (ids < self.vocabulary), ids, UNK_ID)
        # Whatever a padded step holds, it is padding: the mask alone decides.
        return torch.where(mask > 0, ids, PAD_ID), mask

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Zeroed by the mask, not only by [PAD]'s row: the convolutions' windows past a text's
        # end must see the zeros they see past the end of an unpadded text.
        return self.table(ids) * (mask > 0).unsqueeze(-1).to(self.table.weight.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings ``(batch, length, width)`` and the mask ``(batch, length)``."""
        ids, mask = self.tokens(x)
        return self.embed(ids, mask), mask

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings with the mask as their last channel: what a numeric classifier reads."""
        embedded, mask = self(x)
        return torch.cat([embedded, mask.unsqueeze(-1).to(embedded.dtype)], dim=-1)


class TextClassifier(SequenceClassifier):
    """A classifier of token ids: the shape's ``vocabulary`` sizes its embedding table."""

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        if shape.vocabulary < UNK_ID + 1:
            raise ValueError(f"{self.arch} reads token ids: its shape needs a vocabulary holding at least [PAD] "
                             f"and [UNK] (vocabulary >= {UNK_ID + 1}), got vocabulary={shape.vocabulary}")


def body_shape(shape: ClassifierShape, embedding_dim: int) -> ClassifierShape:
    """The numeric problem a reused body solves: ``embedding_dim`` channels per step, the same classes."""
    return ClassifierShape(channels=embedding_dim, classes=shape.classes, max_length=shape.max_length)


class _EmbeddedBody(TextClassifier):
    """Token embeddings fed to a numeric classifier network, its body, built for ``embedding_dim`` channels."""

    body_cls: ClassVar[type[SequenceClassifier]]

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        self.embedding = TokenEmbedding(shape.vocabulary, params.embedding_dim)
        self.body = self.body_cls(body_shape(shape, params.embedding_dim), self.body_params(params))

    def body_params(self, params: Any) -> Any:
        """The body's own params, from this classifier's."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.embedding.frames(x))


class _TextRecurrentClassifier(_EmbeddedBody):
    """The recurrent classifier (packed to the real tokens, last state and mean output) over token embeddings."""

    Params = TextRecurrentParams

    def body_params(self, params: TextRecurrentParams) -> RecurrentClassifierParams:
        return RecurrentClassifierParams(hidden_size=params.hidden_size, num_layers=params.num_layers,
                                         dropout=params.dropout, bidirectional=params.bidirectional)


class TextRNNClassifier(_TextRecurrentClassifier):
    arch = "text_rnn"
    body_cls = RNNClassifier


class TextLSTMClassifier(_TextRecurrentClassifier):
    arch = "text_lstm"
    body_cls = LSTMClassifier


class TextGRUClassifier(_TextRecurrentClassifier):
    arch = "text_gru"
    body_cls = GRUClassifier


class TextTransformerClassifier(_EmbeddedBody):
    """The Transformer encoder classifier over token embeddings, its width ``embedding_dim``.

    The body keeps its input projection, a learned linear map of the embeddings before the
    positions are added, so that it is the numeric network unchanged.
    """

    arch = "text_transformer"
    Params = TextTransformerParams
    body_cls = TransformerClassifier

    def __init__(self, shape: ClassifierShape, params: TextTransformerParams) -> None:
        if params.embedding_dim % params.num_heads:
            raise ValueError(f"{self.arch}: embedding_dim ({params.embedding_dim}) must be a multiple of "
                             f"num_heads ({params.num_heads})")
        super().__init__(shape, params)

    def body_params(self, params: TextTransformerParams) -> TransformerClassifierParams:
        return TransformerClassifierParams(d_model=params.embedding_dim, num_heads=params.num_heads,
                                           num_layers=params.num_layers, feedforward=params.feedforward,
                                           dropout=params.dropout)


class TextCNNClassifier(TextClassifier):
    """Kim (2014): parallel convolutions of several widths over the embeddings, ReLU, max over time, a linear head.

    As in Kim's code, a text is zero-padded by ``width - 1`` steps on either side, so every
    filter has a window on every token and a text shorter than the widest filter still
    has windows. The maximum is taken over the windows holding at least one real token:
    the windows past those, all padding, are masked with -inf, so a batch's padding never
    changes a text's features. Kim's max-norm constraint on the head's weights is left out:
    one loop trains every network, and its weight decay is the regulariser it offers.
    """

    arch = "text_cnn"
    Params = TextCNNParams

    def __init__(self, shape: ClassifierShape, params: TextCNNParams) -> None:
        super().__init__(shape, params)
        if not params.widths or min(params.widths) < 1:
            raise ValueError(f"{self.arch}: needs at least one filter width, each >= 1, got {params.widths}")
        self.embedding = TokenEmbedding(shape.vocabulary, params.embedding_dim)
        self.convolutions = nn.ModuleList(nn.Conv1d(params.embedding_dim, params.maps, width)
                                          for width in params.widths)
        self.dropout = nn.Dropout(params.dropout)
        self.head = nn.Linear(params.maps * len(params.widths), shape.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded, mask = self.embedding(x)
        lengths = lengths_of(mask)
        tokens = embedded.transpose(1, 2)  # (batch, embedding_dim, length), as Conv1d reads it
        pooled = []
        for width, convolution in zip(self.params.widths, self.convolutions, strict=True):
            maps = torch.relu(convolution(nn.functional.pad(tokens, (width - 1, width - 1))))
            # Window p spans tokens p - width + 1 .. p: it holds a real token while p < length + width - 1.
            windows = torch.arange(maps.shape[-1], device=x.device)[None, :] < (lengths + width - 1)[:, None]
            pooled.append(masked_max(maps.transpose(1, 2), windows.to(maps.dtype)))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


def bigram_buckets(first: torch.Tensor, second: torch.Tensor, buckets: int) -> torch.Tensor:
    """The bucket of each id pair, fastText's hash: ``(first * 116049371 + second) mod buckets``; int64."""
    return (first * BIGRAM_HASH_MULTIPLIER + second).remainder(buckets)


class FastTextClassifier(TextClassifier):
    """Joulin et al. (2017): a linear classifier of the mean of a text's word and bigram embeddings.

    A text of L tokens contributes its L word embeddings and the embeddings of its L - 1
    adjacent pairs, each pair hashed into one of ``bigram_buckets`` (unrelated pairs may
    share one); the mean over all of them, padding left out, feeds one linear layer. The
    tables and the layer start as fastText's do.
    """

    arch = "fasttext"
    Params = FastTextParams

    def __init__(self, shape: ClassifierShape, params: FastTextParams) -> None:
        super().__init__(shape, params)
        self.embedding = TokenEmbedding(shape.vocabulary, params.embedding_dim)
        self.bigrams = nn.Embedding(params.bigram_buckets, params.embedding_dim) if params.bigram_buckets else None
        self.dropout = nn.Dropout(params.dropout)
        self.head = nn.Linear(params.embedding_dim, shape.classes)
        # fastText's initialisation: input vectors uniform in +-1/dim, so the random vectors of the
        # many words that say nothing do not drown, in the mean, the few that carry the class;
        # and a zero output layer.
        bound = 1.0 / params.embedding_dim
        with torch.no_grad():
            for table in (self.embedding.table, self.bigrams):
                if table is not None:
                    table.weight.uniform_(-bound, bound)
            self.embedding.table.weight[PAD_ID].zero_()
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = self.embedding.tokens(x)
        real = mask > 0
        total = self.embedding.embed(ids, mask).sum(1)
        count = real.sum(1)
        if self.bigrams is not None and x.shape[1] > 1:
            pairs = real[:, :-1] & real[:, 1:]
            vectors = self.bigrams(bigram_buckets(ids[:, :-1], ids[:, 1:], self.params.bigram_buckets))
            total = total + vectors.masked_fill(~pairs.unsqueeze(-1), 0.0).sum(1)
            count = count + pairs.sum(1)
        mean = total / count.clamp(min=1).unsqueeze(-1).to(total.dtype)
        return self.head(self.dropout(mean))


class TextDeepEnsembleClassifier(DeepEnsembleClassifier):
    """The deep ensemble of ``seqpipe.models.classifiers.ensemble`` over text members: the mean of their probabilities."""

    arch = "text_deep_ensemble"
    Params = TextDeepEnsembleParams
    member_archs = TEXT_MEMBER_ARCHS
