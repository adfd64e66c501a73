"""An ensemble of classifiers of any kind: each member fitted on the same data, their class probabilities averaged.

The members are built from ``ClassifierEnsembleParams``: every entry of ``members`` (an
architecture and its params: a network, a reference, or a deep ensemble; optionally
``training`` settings of its own, such as a learning rate, over the pipeline's) times
``seeds`` copies, each built and fitted from a seed of its own. Each member is fitted by its own
estimator (a network by the one training loop, with its own checkpoint, so a killed
ensemble resumes member by member), and the prediction is the plain mean of the
members' probabilities: no weight is fitted, so nothing of the ensemble is chosen on
any split. The ensemble saves as one folder with a folder per member, and registers and
serves as one model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqpipe.estimators.classification import ClassifierEstimator, ClassifyFitData, SequenceBatch, fitted_numbers
from seqpipe.estimators.ensemble import MAX_SEED, load_members, member_checkpoint, save_members, seeded_members
from seqpipe.estimators.interface import FitOptions
from seqpipe.evaluation.classification import log_loss
from seqpipe.hyperparams import ClassifierEnsembleParams, check_own_training, parse_params
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.training import FitResult, MemberFit, TrainSettings


@dataclass(frozen=True)
class ClassifierMemberPlan:
    """What one member is: its architecture and params, the seed it is built and fitted from, and the training
    settings it fits with instead of the pipeline's."""

    arch: str
    params: dict[str, Any]
    copy: int  # which of the ``seeds`` copies of this entry
    seed: int
    training: dict[str, Any] = field(default_factory=dict)

    def label(self, index: int) -> str:
        return f"{index:02d}-{self.arch}-copy{self.copy}"


def classifier_member_plans(params: ClassifierEnsembleParams, seeds: list[int]) -> list[ClassifierMemberPlan]:
    """Every (member entry, copy) pair, in that order, with one seed each from ``seeds``."""
    pairs = [(member, copy) for member in params.members for copy in range(params.seeds)]
    return [ClassifierMemberPlan(member["arch"], dict(member.get("params") or {}), copy, seed,
                                 dict(member.get("training") or {}))
            for (member, copy), seed in zip(pairs, seeds, strict=True)]


class ClassifierEnsembleEstimator(ClassifierEstimator):
    arch = "classifier_ensemble"

    def __init__(self, shape: ClassifierShape, params: ClassifierEnsembleParams, plans: list[ClassifierMemberPlan],
                 members: list[ClassifierEstimator]) -> None:
        super().__init__(shape, params)
        self.plans, self.members = plans, members
        self.requirements = tuple(dict.fromkeys(r for m in members for r in m.requirements))

    @classmethod
    def build(cls, shape: ClassifierShape, params: Any) -> ClassifierEnsembleEstimator:
        from seqpipe.estimators.catalog import build_estimator  # the catalog imports this module

        params = parse_params(cls.arch, params)
        nested = [member["arch"] for member in params.members if member["arch"] == cls.arch]
        if nested:
            raise ValueError(f"{cls.arch}: a member cannot be another {cls.arch}")
        count = len(params.members) * params.seeds
        plans = classifier_member_plans(params, torch.randint(0, MAX_SEED, (count,)).tolist())

        def build(index: int, plan: ClassifierMemberPlan) -> ClassifierEstimator:
            try:
                check_own_training(plan.training)
            except ValueError as exc:
                raise ValueError(f"{cls.arch}: member {plan.label(index)}: training settings {exc}") from None
            try:
                return build_estimator(plan.arch, shape, plan.params)
            except ValueError as exc:
                raise ValueError(f"{cls.arch}: member {plan.label(index)}: {exc}") from None

        return cls(shape, params, plans, seeded_members(plans, build))

    @property
    def trainable(self) -> bool:
        return any(member.trainable for member in self.members)

    def describe(self) -> dict[str, Any]:
        counts = [fitted_numbers(member.describe()) for member in self.members]
        fitted = {} if None in counts else {"parameters": sum(counts)}
        return {"combine": "mean", "members": len(self.members),
                "member_archs": ",".join(sorted({plan.arch for plan in self.plans})), "seeds": self.params.seeds,
                **fitted}

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        fits = []
        for index, (plan, member) in enumerate(zip(self.plans, self.members, strict=True)):
            label = plan.label(index)
            member_options = FitOptions(
                name=f"{options.name}/{label}", checkpoint=member_checkpoint(options.checkpoint, index),
                signature=None if options.signature is None else {**options.signature, "member": label})
            result = member.fit(data, dataclasses.replace(settings, seed=plan.seed, **plan.training), member_options)
            own_training = {f"training.{key}": value for key, value in plan.training.items()}
            fits.append(MemberFit(label, {"arch": plan.arch, "seed": plan.seed, **own_training, **member.describe()},
                                  result))
        # Every member predicts probabilities, so the ensemble's own validation log loss speaks for it.
        val_loss = log_loss(data.val_labels, self.predict_proba(data.val)) if len(data.val) else float("nan")
        return FitResult(fits[0].result.device, 0, val_loss, sum(f.result.epochs_run for f in fits), False,
                         sum(f.result.seconds for f in fits), members=fits)

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        return np.mean([member.predict_proba(batch) for member in self.members], axis=0)

    def save(self, folder: Path) -> None:
        save_members(folder, {"arch": self.arch, "shape": dataclasses.asdict(self.shape),
                              "params": dataclasses.asdict(self.params)}, self.plans, self.members)

    @classmethod
    def load(cls, folder: Path) -> ClassifierEnsembleEstimator:
        spec, plans, members = load_members(folder, ClassifierMemberPlan)
        return cls(ClassifierShape(**spec["shape"]), parse_params(cls.arch, spec["params"]), plans, members)
