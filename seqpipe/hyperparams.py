"""Every architecture's hyper-parameters and the training loop's settings, as frozen standard-library dataclasses.

One schema for both sides: ``seqpipe.config`` builds its pydantic models from these
classes, so ``conf/models/*.yaml`` is typed at load, and ``seqpipe.models`` builds its
networks from their instances. Standard library only: the models must import with torch
and numpy alone, and the config may import nothing else of seqpipe.

The defaults are the architectures' defaults: changing one changes every model trained
without that key in its YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union


def _bounded(default: Any, description: str = "", **bounds: float) -> Any:
    """A field whose value must keep within ``bounds`` (pydantic's gt, ge, ...), checked by the config."""
    return field(default=default, metadata={"description": description, **bounds})


@dataclass(frozen=True)
class TrainSettings:
    """How the one training loop runs: ``training`` in conf/pipeline.yaml."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_epochs: int = _bounded(30, gt=0)
    batch_size: int = _bounded(256, gt=0)
    learning_rate: float = _bounded(1e-3, gt=0)
    weight_decay: float = _bounded(0.0, ge=0)
    patience: int = _bounded(5, "epochs without validation improvement before stopping", gt=0)
    grad_clip: float | None = _bounded(1.0, gt=0)
    seed: int = 42
    num_threads: int | None = _bounded(None, "torch CPU threads; None uses all cores", gt=0)
    progress: bool = True
    progress_interval: float = _bounded(30.0, "seconds between progress lines inside an epoch when stderr is no "
                                        "terminal (a bar when it is); never changes the weights", gt=0)


# What a point forecaster is trained to minimise (seqpipe.models.losses): mse and mae in
# scaled units; mape and smape, which need a scaling that keeps ratios (prepare.scaler:
# meanabs); mase, the error over each window's in-sample seasonal-naive error.
PointLoss = Literal["mse", "mae", "mape", "smape", "mase"]


def _loss_field() -> Any:
    return _bounded("mse", "training loss: mse | mae | mape | smape (prepare.scaler: meanabs) | mase")


# Settings that change how fast or how visibly a model trains, never what it learns: cache
# keys and checkpoint signatures leave them out.
NOT_IN_WEIGHTS = frozenset({"progress", "progress_interval", "num_threads"})
# The training settings a model's own file (``training:`` beside ``params:``) or a classifier
# ensemble's member may set for that model alone: how its optimiser runs. Where it runs, its
# seed and how it reports stay the pipeline's.
PER_MODEL_TRAINING = frozenset({"max_epochs", "batch_size", "learning_rate", "weight_decay", "patience",
                                "grad_clip"})


def check_own_training(training: dict[str, Any]) -> None:
    """Refuses the training settings a model may not set for itself (outside ``PER_MODEL_TRAINING``), naming them."""
    refused = sorted(set(training) - PER_MODEL_TRAINING)
    if refused:
        raise ValueError(f"{refused} cannot be set per model; a model may set {sorted(PER_MODEL_TRAINING)}")


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass(frozen=True)
class RecurrentParams:
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class TransformerParams:
    patch_len: int = 16
    stride: int = 8
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    feedforward: int = 128
    dropout: float = 0.1
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class TCNParams:
    channels: int = 32
    num_blocks: int = 4
    kernel_size: int = 3
    dropout: float = 0.1
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class DLinearParams:
    # Odd, so the average is centred; the paper uses 25 on hourly and daily data.
    moving_average: int = 25
    # DLinear itself does not normalise windows; RevIN helps where series drift.
    revin: bool = True
    loss: PointLoss = _loss_field()


# How a window's target is put on its own scale before the network sees it
# (seqpipe.models.revin): "revin" subtracts its mean and divides by its standard deviation,
# "level" divides by its mean absolute value (no shift), "none" passes it as it is.
WindowScaling = Literal["revin", "level", "none"]


def _level_scaling_field() -> Any:
    return _bounded("level", "level: divide each window by its mean absolute target (meant for prepare.scaler: meanabs)")


@dataclass(frozen=True)
class NBEATSParams:
    """N-BEATS (Oreshkin et al. 2020): stacks of fully connected blocks, each removing its backcast from the input.

    The paper's generic model has 30 stacks of one block, 4 layers of 512; these defaults
    are smaller for a CPU. ``["trend", "seasonality"]`` with ``share_weights`` is its
    interpretable model (conf/models/nbeats_interpretable.yaml).
    """

    stack_types: list[Literal["generic", "trend", "seasonality"]] = field(
        default_factory=lambda: ["generic", "generic", "generic", "generic"],
        metadata={"description": "one entry per stack, input side first: generic (a learned linear basis), "
                                 "trend (polynomial) or seasonality (Fourier)", "min_length": 1})
    blocks_per_stack: int = _bounded(1, ge=1)
    layers: int = _bounded(4, "fully connected layers of each block", ge=1)
    layer_width: int = _bounded(256, gt=0)
    share_weights: bool = _bounded(False, "the blocks of a stack are one block, applied blocks_per_stack times "
                                          "(the paper's interpretable setting)")
    trend_degree: int = _bounded(3, "degree of the trend stacks' polynomial basis", ge=0)
    harmonics: int | None = _bounded(None, "Fourier harmonics of the seasonality stacks; None: max(1, horizon // 2 - 1) "
                                           "as the paper", ge=1)
    naive_level: bool = _bounded(True, "start the forecast from the window's last value, as the reference "
                                       "implementations do; false: the blocks' sum alone, as the paper writes it")
    dropout: float = _bounded(0.0, "after each hidden layer", ge=0, lt=1)
    window_scaling: WindowScaling = _level_scaling_field()
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class NHITSParams:
    """N-HiTS (Challu et al. 2023): N-BEATS blocks on max-pooled inputs, forecasting few coefficients interpolated to the horizon.

    One stack per entry of ``pooling_kernel_sizes`` and ``downsample_frequencies`` (equal
    lengths). 3 stacks of 1 block with 2 layers, as the paper; kernels [2, 2, 1] and
    frequencies [4, 2, 1], the defaults of the authors' NeuralForecast implementation (the
    paper tunes both per dataset); 256 units wide rather than 512, for a CPU.
    """

    pooling_kernel_sizes: list[int] = field(
        default_factory=lambda: [2, 2, 1],
        metadata={"description": "per stack: MaxPool1d kernel (and stride) over the lookback, at most the lookback",
                  "min_length": 1})
    downsample_frequencies: list[int] = field(
        default_factory=lambda: [4, 2, 1],
        metadata={"description": "per stack: each block forecasts max(1, horizon // frequency) coefficients, "
                                 "linearly interpolated to the horizon", "min_length": 1})
    blocks_per_stack: int = _bounded(1, ge=1)
    layers: int = _bounded(2, "fully connected layers of each block", ge=1)
    layer_width: int = _bounded(256, gt=0)
    naive_level: bool = _bounded(True, "start the forecast from the window's last value, as the reference "
                                       "implementation does")
    dropout: float = _bounded(0.0, "after each hidden layer", ge=0, lt=1)
    window_scaling: WindowScaling = _level_scaling_field()
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class CVAEParams:
    hidden_size: int = 64
    latent_size: int = 8
    # Weight of the KL term; 1 is the true ELBO, less trades calibration for sharper fits.
    beta: float = 1.0


@dataclass(frozen=True)
class GANParams:
    hidden_size: int = 64
    noise_size: int = 8
    discriminator_size: int = 64
    adversarial_weight: float = 0.1
    supervised_weight: float = 1.0
    # Samples per history for the energy score; at least 2 (its spread term needs pairs).
    energy_samples: int = 8
    # Share of training rows that see the null context instead of their history.
    unconditional_share: float = 0.1
    # One-sided label smoothing: the target for real pairs.
    real_label: float = 0.9
    discriminator_lr_scale: float = 1.0
    adam_beta1: float = 0.5
    point_samples: int = 32


@dataclass(frozen=True)
class DBNParams:
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 32])
    pretrain_epochs: int = 5
    cd_steps: int = 1
    pretrain_learning_rate: float = 0.01
    loss: PointLoss = _loss_field()


@dataclass(frozen=True)
class DeepEnsembleParams:
    members: int = 5
    member_arch: str = "gru"
    # The member architecture's params, as a mapping: checked against PARAMS[member_arch].
    member_params: dict[str, Any] = field(default_factory=dict)
    # Variance floor in scaled units: keeps the likelihood finite on a perfect fit.
    min_variance: float = 1e-4


@dataclass(frozen=True)
class EnsembleParams:
    """Forecasters of any architectures, each fitted on the same data, their point forecasts combined per step.

    The members are every combination of an entry of ``members``, a lookback of
    ``lookbacks`` and one of ``seeds`` seeds: three losses of N-BEATS over two lookbacks and
    three seeds are 18 members, as N-BEATS's own ensemble is built.
    """

    members: list[dict[str, Any]] = field(
        default_factory=lambda: [{"arch": "nbeats", "params": {"loss": "mase"}}],
        metadata={"description": "each {arch, params}: a forecasting architecture and its params", "min_length": 1})
    lookbacks: list[int] = field(
        default_factory=list,
        metadata={"description": "each member's history window, at most the data's lookback (the last points of it); "
                                 "empty: the data's lookback"})
    seeds: int = _bounded(1, "copies of each member, each initialised and shuffled from its own seed", ge=1)
    combine: Literal["median", "mean"] = _bounded("median", "how the members' forecasts are combined, per step")


# What a statistical model forecasts a series with when it cannot fit it (statsforecast's
# fallback_model): AutoETS refuses histories of a handful of points, which a yearly
# series' training part can be.
StatisticalFallback = Literal["naive", "none"]


def _fallback_field() -> Any:
    return _bounded("naive", "for a series the model cannot fit (too short): naive, its last value; none: fail")


@dataclass(frozen=True)
class AutoETSParams:
    model: str = "ZZZ"  # error, trend, season: Z picks by AICc, A additive, M multiplicative, N none
    damped: bool | None = None  # None tries both
    n_jobs: int = 1
    fallback: StatisticalFallback = _fallback_field()


@dataclass(frozen=True)
class AutoThetaParams:
    decomposition_type: str = "multiplicative"
    model: str | None = None  # None picks among the Theta variants by in-sample MSE
    n_jobs: int = 1
    fallback: StatisticalFallback = _fallback_field()


@dataclass(frozen=True)
class MiniRocketParams:
    """MiniRocket (Dempster et al., 2021): random dilated kernels' PPV features, then a linear classifier."""

    num_kernels: int = _bounded(10_000, "features drawn; rounded to a multiple of 84 by MiniRocket", gt=0)
    max_dilations_per_kernel: int = _bounded(32, gt=0)
    # Inverse L2 strength of the multinomial logistic regression on the standardised features.
    regularization: float = _bounded(1.0, gt=0)
    max_iter: int = _bounded(1000, gt=0)
    n_jobs: int = 1


@dataclass(frozen=True)
class RecurrentClassifierParams:
    """An RNN, LSTM or GRU over the real steps; the head reads the last step's state and the mean of all."""

    hidden_size: int = _bounded(64, gt=0)
    num_layers: int = _bounded(2, gt=0)
    dropout: float = _bounded(0.1, "between stacked layers and before the head", ge=0, lt=1)
    bidirectional: bool = True


@dataclass(frozen=True)
class TCNClassifierParams:
    """Residual blocks of dilated convolutions (dilation doubling per block), masked mean and max pooled."""

    channels: int = _bounded(64, gt=0)
    num_blocks: int = _bounded(4, gt=0)
    kernel_size: int = _bounded(3, gt=1)
    dropout: float = _bounded(0.1, ge=0, lt=1)


@dataclass(frozen=True)
class TransformerClassifierParams:
    """A Transformer encoder over the steps with sinusoidal positions, masked mean pooled."""

    d_model: int = _bounded(64, "a multiple of num_heads", gt=0)
    num_heads: int = _bounded(4, gt=0)
    num_layers: int = _bounded(2, gt=0)
    feedforward: int = _bounded(128, gt=0)
    dropout: float = _bounded(0.1, ge=0, lt=1)


@dataclass(frozen=True)
class DBNClassifierParams:
    """A stack of RBMs on each sequence resampled to ``frames`` steps, pre-trained greedily, then fine-tuned."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128],
                                    metadata={"description": "units of each RBM, bottom first", "min_length": 1})
    frames: int = _bounded(16, "steps each sequence is linearly resampled to", ge=2)
    pretrain_epochs: int = _bounded(5, "contrastive divergence epochs per RBM; 0 skips pre-training", ge=0)
    cd_steps: int = _bounded(1, "Gibbs steps of CD-k", ge=1)
    pretrain_learning_rate: float = _bounded(0.01, gt=0)


@dataclass(frozen=True)
class DeepEnsembleClassifierParams:
    """M classifiers of one architecture from seeds of their own; the prediction is their mean probability."""

    members: int = _bounded(5, gt=0)
    member_arch: str = "gru_classifier"
    # The member architecture's params, as a mapping: checked against PARAMS[member_arch].
    member_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextRecurrentParams:
    """Token embeddings read by the recurrent classifier (RNN, LSTM or GRU): its last state and mean output."""

    embedding_dim: int = _bounded(100, gt=0)
    hidden_size: int = _bounded(128, gt=0)
    num_layers: int = _bounded(1, gt=0)
    dropout: float = _bounded(0.3, "between stacked layers and before the head", ge=0, lt=1)
    bidirectional: bool = True


@dataclass(frozen=True)
class TextCNNParams:
    """Kim (2014): parallel convolutions of several widths over token embeddings, max-over-time pooled."""

    embedding_dim: int = _bounded(128, gt=0)
    widths: list[int] = field(default_factory=lambda: [3, 4, 5],
                              metadata={"description": "tokens each filter spans, one bank of filters per width",
                                        "min_length": 1})
    maps: int = _bounded(100, "filters (feature maps) per width", gt=0)
    dropout: float = _bounded(0.5, "on the pooled features, before the head", ge=0, lt=1)


@dataclass(frozen=True)
class TextTransformerParams:
    """Token embeddings read by the Transformer encoder classifier, with sinusoidal positions, mean pooled."""

    embedding_dim: int = _bounded(128, "the encoder's width too: a multiple of num_heads", gt=0)
    num_heads: int = _bounded(4, gt=0)
    num_layers: int = _bounded(2, gt=0)
    feedforward: int = _bounded(256, gt=0)
    dropout: float = _bounded(0.1, ge=0, lt=1)


@dataclass(frozen=True)
class FastTextParams:
    """Joulin et al. (2017): the mean of a text's word and hashed-bigram embeddings, then one linear layer."""

    embedding_dim: int = _bounded(64, gt=0)
    # fastText's own default is 2M buckets; 100k keeps the table (buckets x embedding_dim floats) small.
    bigram_buckets: int = _bounded(100_000, "hash buckets of the word bigrams; 0 reads words alone", ge=0)
    dropout: float = _bounded(0.0, "on the averaged embedding, before the head", ge=0, lt=1)


@dataclass(frozen=True)
class TextDeepEnsembleParams:
    """M text classifiers of one architecture from seeds of their own; the prediction is their mean probability."""

    members: int = _bounded(5, gt=0)
    member_arch: str = "text_cnn"
    # The member architecture's params, as a mapping: checked against PARAMS[member_arch].
    member_params: dict[str, Any] = field(default_factory=dict)


# How a linear text model is fitted on its features: a multinomial logistic regression, or a
# linear SVM (squared hinge, one class against the rest) whose scores a temperature fitted on
# the validation split turns into probabilities.
LinearLoss = Literal["logistic", "squared_hinge"]


# Which words a linear text model counts: the tokenizer's tokens (their ids), or the words of
# two or more letters or digits in each text's normalised characters, punctuation and
# one-character words left out, as scikit-learn's vectorizers split text by default.
WordSource = Literal["tokens", "text"]


@dataclass(frozen=True)
class TextNgramParams:
    """What the linear text models count: word n-grams and, optionally, character n-grams of each text."""

    ngram_max: int = _bounded(2, "longest word n-gram counted: 1 words, 2 words and bigrams", ge=1)
    min_df: int = _bounded(1, "an n-gram in fewer training texts than this is dropped", ge=1)
    words: WordSource = _bounded("tokens", "tokens: the tokenizer's tokens | text: the words of two or more letters "
                                 "or digits in the normalised text, as scikit-learn splits it")
    # Character n-grams inside each word padded by a space (scikit-learn's char_wb), of the
    # normalised text through its last kept token; their TF-IDF block is normalised apart
    # from the words' block, as a union of two vectorizers is.
    char_ngram_min: int = _bounded(2, "shortest character n-gram counted", ge=1)
    char_ngram_max: int = _bounded(0, "longest character n-gram counted; 0 counts none", ge=0)

    def __post_init__(self) -> None:
        if self.char_ngram_max and self.char_ngram_max < self.char_ngram_min:
            raise ValueError(f"char_ngram_max {self.char_ngram_max} is below char_ngram_min {self.char_ngram_min}: "
                             f"give char_ngram_max 0 (no character n-grams) or at least char_ngram_min")

    @property
    def reads_characters(self) -> bool:
        """Whether the n-grams come from each text's characters rather than from its token ids alone."""
        return self.words == "text" or self.char_ngram_max > 0


@dataclass(frozen=True)
class TfidfLinearParams(TextNgramParams):
    """TF-IDF of each text's n-grams, then a linear model: logistic regression or linear SVM."""

    sublinear_tf: bool = True  # 1 + log(count) rather than the count
    loss: LinearLoss = _bounded("logistic", "logistic (a multinomial regression) | squared_hinge (a linear SVM, "
                                "its probabilities a softmax of its scores at a temperature fitted on validation)")
    # Inverse L2 strength (scikit-learn's C) of the linear model on the L2-normalised TF-IDF rows.
    regularization: float = _bounded(10.0, gt=0)
    max_iter: int = _bounded(1000, gt=0)


@dataclass(frozen=True)
class NBLinearParams(TextNgramParams):
    """Wang and Manning (2012): n-gram presence weighted by naive Bayes log-count ratios, then a logistic regression."""

    smoothing: float = _bounded(1.0, "added to every n-gram's count per class before the log-count ratio", gt=0)
    # Inverse L2 strength of each class's logistic regression on the ratio-weighted presence features.
    regularization: float = _bounded(1.0, gt=0)
    max_iter: int = _bounded(1000, gt=0)


ClassifierWeighting = Literal["equal", "greedy"]


@dataclass(frozen=True)
class ClassifierEnsembleParams:
    """Classifiers of any architectures, networks or references, each fitted on the same data; the prediction is
    the mean of their class probabilities, equal or weighted by a greedy selection on validation.

    The members are every entry of ``members`` times ``seeds`` copies, each copy
    initialised (and, for a network, shuffled) from its own seed.
    """

    members: list[dict[str, Any]] = field(
        default_factory=lambda: [{"arch": "nb_linear"}, {"arch": "fasttext"}],
        metadata={"description": "each {arch, params}: a classification architecture and its params", "min_length": 1})
    seeds: int = _bounded(1, "copies of each member, each from its own seed", ge=1)
    weighting: ClassifierWeighting = _bounded(
        "equal", "equal: the plain mean of the members' probabilities | greedy: ensemble selection (Caruana et al. "
                 "2004): members added one at a time, with replacement, each the one that lowers the validation log "
                 "loss most; their counts are the weights")
    greedy_rounds: int = _bounded(25, "greedy: additions tried; the weights are those of the round with the lowest "
                                      "validation log loss", ge=1)


# What a deep_ensemble_classifier may hold: the classifier networks trained by the loop.
CLASSIFIER_MEMBER_ARCHS: frozenset[str] = frozenset({
    "rnn_classifier", "lstm_classifier", "gru_classifier", "tcn_classifier", "transformer_classifier", "dbn_classifier",
})

# What a text_deep_ensemble may hold: the text classifier networks trained by the loop.
TEXT_MEMBER_ARCHS: frozenset[str] = frozenset({
    "text_rnn", "text_lstm", "text_gru", "text_cnn", "text_transformer", "fasttext",
})
# The classifier networks that read token ids (a shape with a vocabulary) rather than numeric frames.
TEXT_CLASSIFIER_ARCHS: frozenset[str] = TEXT_MEMBER_ARCHS | {"text_deep_ensemble"}

# Sequence classification's architectures (task: classify); every other one forecasts.
CLASSIFICATION_ARCHS: frozenset[str] = frozenset(
    {"majority", "minirocket", "deep_ensemble_classifier", "tfidf_linear", "nb_linear", "classifier_ensemble"}
    | CLASSIFIER_MEMBER_ARCHS
    | TEXT_CLASSIFIER_ARCHS
)

# Every architecture, by the name ``arch`` takes in conf/models/*.yaml.
PARAMS: dict[str, type] = {
    "naive": NoParams,
    "seasonal_naive": NoParams,
    "rnn": RecurrentParams,
    "lstm": RecurrentParams,
    "gru": RecurrentParams,
    "tcn": TCNParams,
    "transformer": TransformerParams,
    "dlinear": DLinearParams,
    "nbeats": NBEATSParams,
    "nhits": NHITSParams,
    "cvae": CVAEParams,
    "gan": GANParams,
    "dbn": DBNParams,
    "deep_ensemble": DeepEnsembleParams,
    "ensemble": EnsembleParams,
    "auto_ets": AutoETSParams,
    "auto_theta": AutoThetaParams,
    "majority": NoParams,
    "minirocket": MiniRocketParams,
    "rnn_classifier": RecurrentClassifierParams,
    "lstm_classifier": RecurrentClassifierParams,
    "gru_classifier": RecurrentClassifierParams,
    "tcn_classifier": TCNClassifierParams,
    "transformer_classifier": TransformerClassifierParams,
    "dbn_classifier": DBNClassifierParams,
    "deep_ensemble_classifier": DeepEnsembleClassifierParams,
    "text_rnn": TextRecurrentParams,
    "text_lstm": TextRecurrentParams,
    "text_gru": TextRecurrentParams,
    "text_cnn": TextCNNParams,
    "text_transformer": TextTransformerParams,
    "fasttext": FastTextParams,
    "text_deep_ensemble": TextDeepEnsembleParams,
    "tfidf_linear": TfidfLinearParams,
    "nb_linear": NBLinearParams,
    "classifier_ensemble": ClassifierEnsembleParams,
}


def _type_errors(value: Any, expected: Any, where: str) -> list[str]:
    """Why ``value`` is not of the annotation ``expected``; empty when it is.

    The same rules as the config's strict pydantic validation: no coercion, an int is
    not a bool (nor a bool an int), a float accepts an int.
    """
    if expected is Any:
        return []
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        options = typing.get_args(expected)
        return [] if any(not _type_errors(value, option, where) for option in options) else [
            f"{where} must be {_name(expected)}, got {value!r}"]
    if origin is Literal:
        # Equal and of the same type: True is not 1, as in pydantic's strict mode.
        options = typing.get_args(expected)
        return [] if any(type(value) is type(o) and value == o for o in options) else [
            f"{where} must be one of {list(options)}, got {value!r}"]
    if expected is type(None):
        return [] if value is None else [f"{where} must be None, got {value!r}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where} must be {_name(expected)}, got {value!r}"]
        (item,) = typing.get_args(expected) or (Any,)
        return [e for i, v in enumerate(value) for e in _type_errors(v, item, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where} must be {_name(expected)}, got {value!r}"]
        key, item = typing.get_args(expected) or (Any, Any)
        return [e for k, v in value.items() for e in _type_errors(k, key, f"{where} key") + _type_errors(v, item, f"{where}.{k}")]
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    return [] if ok else [f"{where} must be {_name(expected)}, got {value!r}"]


def _name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def parse_params(arch: str, values: Any) -> Any:
    """The typed params of ``arch`` from a mapping (or an instance, returned as it is).

    Unknown keys and values of the wrong type are errors that name the architecture and
    the key: a ``ValueError``, for callers (tests, benchmarks) that build models from
    plain dicts without the config. ``conf/models/*.yaml`` is checked earlier, at load.
    """
    try:
        cls = PARAMS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture '{arch}'; known: {sorted(PARAMS)}") from None
    return parse_as(cls, values, arch)


def parse_as(cls: type, values: Any, label: str) -> Any:
    """An instance of the params dataclass ``cls`` from a mapping; ``label`` starts each error."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ValueError(f"{label}: params must be {cls.__name__} or a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{label}: unknown params {unknown}; known: {sorted(known)}")
    errors = [e for name, value in values.items() for e in _type_errors(value, hints[name], f"param '{name}'")]
    if errors:
        raise ValueError(f"{label}: " + "; ".join(errors))
    if cls in (DeepEnsembleParams, DeepEnsembleClassifierParams, TextDeepEnsembleParams):
        member_arch = values.get("member_arch", cls.member_arch)
        if member_arch in PARAMS:
            try:
                parse_params(member_arch, values.get("member_params", {}))
            except ValueError as exc:
                raise ValueError(f"{label}: member_params: {exc}") from None
    # A float field given an int holds a float, as the config's validation gives it.
    return cls(**{name: float(value) if hints[name] is float else value for name, value in values.items()})


__all__ = [
    "AutoETSParams", "AutoThetaParams", "CLASSIFICATION_ARCHS", "CLASSIFIER_MEMBER_ARCHS", "CVAEParams",
    "ClassifierEnsembleParams", "DBNClassifierParams",
    "DBNParams", "DLinearParams", "DeepEnsembleClassifierParams", "DeepEnsembleParams", "EnsembleParams", "FastTextParams", "GANParams",
    "MiniRocketParams", "NBEATSParams", "NBLinearParams", "NHITSParams", "NoParams", "PARAMS", "RecurrentClassifierParams",
    "RecurrentParams", "TCNClassifierParams",
    "TCNParams", "TEXT_CLASSIFIER_ARCHS", "TEXT_MEMBER_ARCHS", "TextCNNParams", "TextDeepEnsembleParams",
    "TextNgramParams", "TextRecurrentParams", "TextTransformerParams", "TfidfLinearParams", "TransformerClassifierParams",
    "TransformerParams", "WindowScaling", "parse_as", "parse_params",
]
