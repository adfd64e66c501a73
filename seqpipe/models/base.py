"""The one forecaster interface every architecture implements.

A forecaster maps history windows ``(batch, lookback, channels)`` in scaled units to
forecasts ``(batch, horizon)``. Models that train differently override ``loss``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class ProblemShape:
    lookback: int
    horizon: int
    season: int
    channels: int = 1


@dataclass(frozen=True)
class NoParams:
    pass


class Forecaster(nn.Module):
    arch: ClassVar[str]
    Params: ClassVar[type] = NoParams

    def __init__(self, shape: ProblemShape, params: Any) -> None:
        super().__init__()
        self.shape = shape
        self.params = params

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self(x), y)

    @classmethod
    def parse_params(cls, values: dict[str, Any]) -> Any:
        """Build the typed params, naming unknown or mistyped keys instead of ignoring them."""
        fields = {f.name: f for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{cls.arch}: unknown params {unknown}; known: {sorted(fields)}")
        for name, value in values.items():
            expected = fields[name].type
            kinds = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(str(expected))
            if kinds and (not isinstance(value, kinds) or (kinds is int and isinstance(value, bool))):
                raise ValueError(f"{cls.arch}: param '{name}' must be {expected}, got {value!r}")
        return cls.Params(**values)
