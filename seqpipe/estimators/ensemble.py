"""An ensemble of forecasters of any kind: each member fitted on the same data, their point forecasts combined.

The members are built from ``EnsembleParams``: every combination of a member spec, a
lookback and a seed. A member with a shorter lookback than the data's reads the last
points of each window; a statistical member reads the whole histories as it does alone.
Each member is fitted by its own estimator (a network by the one training loop, with its
own checkpoint, so a killed ensemble resumes member by member), and the forecast is the
median (or mean) of the members' forecasts at each step, in original units. The ensemble
saves as one folder with a folder per member and registers and serves as one model.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqpipe.estimators.interface import Estimator, FitData, FitOptions, ForecastInputs
from seqpipe.hyperparams import EnsembleParams, parse_params
from seqpipe.models.base import ProblemShape
from seqpipe.models.persistence import SPEC_FILE
from seqpipe.training import FitResult, MemberFit, TrainSettings

MEMBERS_DIR = "members"
# Member seeds are drawn from the global generator, which the training seed sets.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class MemberPlan:
    """What one member is: its architecture and params, the lookback it reads and the seed it starts from."""

    arch: str
    params: dict[str, Any]
    lookback: int
    copy: int  # which of the ``seeds`` copies of this spec and lookback
    seed: int

    def label(self, index: int) -> str:
        return f"{index:02d}-{self.arch}-lookback{self.lookback}-copy{self.copy}"


def member_plans(params: EnsembleParams, shape: ProblemShape, seeds: list[int]) -> list[MemberPlan]:
    """Every (member spec, lookback, copy) combination, in that order, with one seed each from ``seeds``."""
    lookbacks = params.lookbacks or [shape.lookback]
    wrong = [lookback for lookback in lookbacks if not 1 <= lookback <= shape.lookback]
    if wrong:
        raise ValueError(f"ensemble: lookbacks {wrong} must be between 1 and the data's lookback ({shape.lookback})")
    combinations = list(itertools.product(params.members, lookbacks, range(params.seeds)))
    return [MemberPlan(member["arch"], dict(member.get("params") or {}), lookback, copy, seed)
            for (member, lookback, copy), seed in zip(combinations, seeds, strict=True)]


def _last_points(x: np.ndarray, lookback: int) -> np.ndarray:
    """The last ``lookback`` points of each window ``(n, window, channels)``: what a member of that lookback reads."""
    return x[:, x.shape[1] - lookback:]


def member_checkpoint(checkpoint: Path | None, index: int) -> Path | None:
    return None if checkpoint is None else checkpoint.with_name(f"{checkpoint.stem}.member-{index:02d}{checkpoint.suffix}")


def seeded_members(plans: list[Any], build: Callable[[int, Any], Any]) -> list[Any]:
    """``build(index, plan)`` for each member plan, with torch's CPU generator seeded by ``plan.seed``.

    Each member's initial weights follow from its own seed; the CUDA generator and the
    caller's generator state are left alone.
    """
    members = []
    for index, plan in enumerate(plans):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(plan.seed)
            members.append(build(index, plan))
    return members


def save_members(folder: Path, spec: dict[str, Any], plans: list[Any], members: list[Any]) -> None:
    """The ensemble's ``model.json`` (``spec`` and each member's plan) and a folder per member under ``members/``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "members": [dataclasses.asdict(plan) for plan in plans]}
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    for index, (plan, member) in enumerate(zip(plans, members, strict=True)):
        member.save(folder / MEMBERS_DIR / plan.label(index))


def load_members(folder: Path, plan_cls: type) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """What ``save_members`` wrote: the spec, the member plans (as ``plan_cls``) and the loaded members."""
    from seqpipe.estimators.catalog import load_estimator  # the catalog imports this module

    spec = json.loads((folder / SPEC_FILE).read_text())
    plans = [plan_cls(**plan) for plan in spec["members"]]
    members = [load_estimator(folder / MEMBERS_DIR / plan.label(index)) for index, plan in enumerate(plans)]
    return spec, plans, members


class EnsembleEstimator(Estimator):
    arch = "ensemble"

    def __init__(self, shape: ProblemShape, params: EnsembleParams, plans: list[MemberPlan],
                 members: list[Estimator]) -> None:
        super().__init__(shape, params)
        self.plans, self.members = plans, members
        self.requirements = tuple(dict.fromkeys(r for m in members for r in m.requirements))

    @classmethod
    def build(cls, shape: ProblemShape, params: Any) -> EnsembleEstimator:
        from seqpipe.estimators.catalog import build_estimator  # the catalog imports this module

        params = parse_params(cls.arch, params)
        count = len(params.members) * max(1, len(params.lookbacks)) * params.seeds
        plans = member_plans(params, shape, torch.randint(0, MAX_SEED, (count,)).tolist())
        members = seeded_members(plans, lambda _, plan: build_estimator(
            plan.arch, dataclasses.replace(shape, lookback=plan.lookback), plan.params))
        return cls(shape, params, plans, members)

    @property
    def trainable(self) -> bool:
        return any(member.trainable for member in self.members)

    def describe(self) -> dict[str, Any]:
        return {"combine": self.params.combine, "members": len(self.members),
                "member_archs": ",".join(sorted({plan.arch for plan in self.plans})),
                "lookbacks": ",".join(map(str, sorted({plan.lookback for plan in self.plans}))),
                "seeds": self.params.seeds}

    def fit(self, data: FitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        fits = []
        for index, (plan, member) in enumerate(zip(self.plans, self.members)):
            label = plan.label(index)
            (train_x, train_y), (val_x, val_y) = data.train, data.val
            member_data = FitData((_last_points(train_x, plan.lookback), train_y),
                                  (_last_points(val_x, plan.lookback), val_y), data.histories)
            member_options = FitOptions(
                name=f"{options.name}/{label}", checkpoint=member_checkpoint(options.checkpoint, index),
                signature=None if options.signature is None else {**options.signature, "member": label})
            result = member.fit(member_data, dataclasses.replace(settings, seed=plan.seed), member_options)
            fits.append(MemberFit(label, {"arch": plan.arch, "lookback": plan.lookback, "seed": plan.seed,
                                          **member.describe()}, result))
        # Members may train on different losses, so no one validation loss speaks for the ensemble:
        # evaluate scores it on the validation window like any model.
        return FitResult(fits[0].result.device, 0, float("nan"), sum(f.result.epochs_run for f in fits), False,
                         sum(f.result.seconds for f in fits), members=fits)

    def forecast(self, inputs: ForecastInputs) -> np.ndarray:
        forecasts = np.stack([
            member.forecast(dataclasses.replace(inputs, windows=_last_points(inputs.windows, plan.lookback)))
            for plan, member in zip(self.plans, self.members)])
        return np.median(forecasts, axis=0) if self.params.combine == "median" else forecasts.mean(axis=0)

    def save(self, folder: Path) -> None:
        save_members(folder, {"arch": self.arch, "shape": dataclasses.asdict(self.shape),
                              "params": dataclasses.asdict(self.params)}, self.plans, self.members)

    @classmethod
    def load(cls, folder: Path) -> EnsembleEstimator:
        spec, plans, members = load_members(folder, MemberPlan)
        return cls(ProblemShape(**spec["shape"]), parse_params(cls.arch, spec["params"]), plans, members)
