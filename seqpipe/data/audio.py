"""Frame features of raw audio (MFCC or log-mel, by librosa): the recorded, versioned extractor.

A ``FrameExtractor`` holds every setting that shapes the features. It is saved with the
model (``to_dict``) and rebuilt at prediction (``from_dict``), so serving computes
exactly the features training saw. Decoding is libsndfile's (``soundfile``: WAV, FLAC,
OGG and more); the signal is mixed to mono, resampled to ``sample_rate``, optionally
trimmed of leading and trailing silence, and turned into ``(steps, channels)`` float64
frames, one row per ``hop_length`` samples.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from seqpipe.config import AudioFeatures
from seqpipe.errors import SourceError

# Bump when the same settings would give different frames (a change of the recipe below).
EXTRACTOR_VERSION = 1
CHANNEL_PREFIX = {"mfcc": "mfcc", "log_mel": "mel"}

log = logging.getLogger(__name__)


def _librosa_version() -> str:
    import librosa

    return librosa.__version__


@dataclass(frozen=True)
class FrameExtractor:
    """Every setting of the audio -> frames recipe, and the versions that computed it."""

    kind: str
    sample_rate: int
    n_mfcc: int
    n_mels: int
    n_fft: int
    hop_length: int
    trim_db: float | None
    version: int = EXTRACTOR_VERSION
    librosa: str = ""  # the librosa version that computed the training frames

    @classmethod
    def from_config(cls, features: AudioFeatures) -> FrameExtractor:
        return cls(**features.model_dump(), librosa=_librosa_version())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FrameExtractor:
        """Rebuild a recorded extractor; refuse one from a newer recipe, warn about another librosa."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"frame extractor record has unknown keys {unknown}; known: {sorted(known)}")
        extractor = cls(**payload)
        if extractor.version != EXTRACTOR_VERSION:
            raise ValueError(f"frame extractor version {extractor.version} is not this seqpipe's "
                             f"({EXTRACTOR_VERSION}): the features would not match the model's")
        if extractor.kind not in CHANNEL_PREFIX:
            raise ValueError(f"frame extractor kind '{extractor.kind}' is unknown; known: {sorted(CHANNEL_PREFIX)}")
        installed = _librosa_version()
        if extractor.librosa and extractor.librosa != installed:
            log.warning("audio features were recorded with librosa %s, computed now with %s: frames may differ "
                        "slightly", extractor.librosa, installed)
        return extractor

    @property
    def channels(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def channel_names(self) -> list[str]:
        """``mfcc_00``, ``mfcc_01``, ... (or ``mel_00``, ...): zero padded so names sort in channel order."""
        width = max(2, len(str(self.channels - 1)))
        return [f"{CHANNEL_PREFIX[self.kind]}_{i:0{width}d}" for i in range(self.channels)]

    def frames(self, audio: str | Path | bytes) -> np.ndarray:
        """The features of one recording (a path or the file's bytes), ``(steps, channels)`` float64."""
        import librosa

        name = "<bytes>" if isinstance(audio, bytes | bytearray) else str(audio)
        signal = self._decode(audio, name)
        if self.trim_db is not None:
            trimmed, _ = librosa.effects.trim(signal, top_db=self.trim_db, frame_length=self.n_fft,
                                              hop_length=self.hop_length)
            # A recording of pure silence trims to nothing; its untrimmed frames are still frames.
            signal = trimmed if trimmed.size else signal
        if self.kind == "mfcc":
            features = librosa.feature.mfcc(y=signal, sr=self.sample_rate, n_mfcc=self.n_mfcc, n_fft=self.n_fft,
                                            hop_length=self.hop_length, n_mels=self.n_mels)
        else:
            power = librosa.feature.melspectrogram(y=signal, sr=self.sample_rate, n_fft=self.n_fft,
                                                   hop_length=self.hop_length, n_mels=self.n_mels)
            features = librosa.power_to_db(power)
        return np.ascontiguousarray(features.T, dtype=np.float64)

    def frames_of_files(self, paths: Iterable[str | Path]) -> list[np.ndarray]:
        """``frames`` of each file, in order."""
        return [self.frames(path) for path in paths]

    def _decode(self, audio: str | Path | bytes, name: str) -> np.ndarray:
        """The recording as mono float32 samples at ``sample_rate``; a clear error for anything else."""
        import librosa
        import soundfile

        source = io.BytesIO(audio) if isinstance(audio, bytes | bytearray) else Path(audio)
        if isinstance(source, Path) and not source.is_file():
            raise SourceError(f"{name}: audio file not found")
        try:
            samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except RuntimeError as exc:  # soundfile.LibsndfileError, for anything libsndfile cannot decode
            raise SourceError(f"{name}: not a readable audio file (WAV, FLAC, OGG): {exc}") from None
        if samples.shape[0] == 0:
            raise SourceError(f"{name}: the audio file holds no samples")
        # A float file can hold NaN or infinity, which librosa rejects with an error that names no file.
        if not np.isfinite(samples).all():
            raise SourceError(f"{name}: the audio file holds non-finite samples (NaN or infinity)")
        signal = librosa.to_mono(samples.T)
        if rate != self.sample_rate:
            signal = librosa.resample(signal, orig_sr=rate, target_sr=self.sample_rate)
        return signal
