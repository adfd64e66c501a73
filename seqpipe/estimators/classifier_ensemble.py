"""An ensemble of classifiers of any kind: each member fitted on the same data, their class probabilities averaged.

The members are built from ``ClassifierEnsembleParams``: every entry of ``members`` (an
architecture and its params: a network, a reference, or a deep ensemble; optionally
``training`` settings of its own, such as a learning rate, over the pipeline's) times
``seeds`` copies, each built and fitted from a seed of its own. Each member is fitted by its own
estimator (a network by the one training loop, with its own checkpoint, so a killed
ensemble resumes member by member), and the prediction is the mean of the members'
probabilities: plain (``weighting: equal``, nothing of the ensemble chosen on any split)
or weighted by ensemble selection on the validation split (``weighting: greedy``,
Caruana et al. 2004): starting from none, ``greedy_rounds`` times the member whose
addition (with replacement) gives the lowest validation log loss is added, and the
weights are the members' counts at the round with the lowest loss. Log loss, a proper
score, rather than accuracy: it moves with every probability, so few validation texts
still rank the additions, and it rewards members that are right with confidence. The
weights see validation only; the validation score of a greedy ensemble is therefore a
little optimistic beside its members'. The ensemble saves as one folder with a folder
per member (its weights in ``model.json``), and registers and serves as one model.
"""

from __future__ import annotations

import dataclasses
import logging
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

log = logging.getLogger(__name__)


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
                 members: list[ClassifierEstimator], weights: np.ndarray | None = None) -> None:
        super().__init__(shape, params)
        self.plans, self.members = plans, members
        # Each member's share of the mean; None until a greedy ensemble is fitted, and for an equal one.
        self.weights = weights
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
        return {"combine": "mean" if self.params.weighting == "equal" else "greedy weighted mean",
                "members": len(self.members),
                "member_archs": ",".join(sorted({plan.arch for plan in self.plans})), "seeds": self.params.seeds,
                **fitted}

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        results = []
        for index, (plan, member) in enumerate(zip(self.plans, self.members, strict=True)):
            label = plan.label(index)
            member_options = FitOptions(
                name=f"{options.name}/{label}", checkpoint=member_checkpoint(options.checkpoint, index),
                signature=None if options.signature is None else {**options.signature, "member": label})
            results.append(member.fit(data, dataclasses.replace(settings, seed=plan.seed, **plan.training),
                                      member_options))
        self.weights = None
        # Each member predicts the validation split once: for the weights and for the ensemble's own loss.
        val_probabilities = [member.predict_proba(data.val) for member in self.members] if len(data.val) else []
        if self.params.weighting == "greedy":
            if not val_probabilities:
                raise ValueError(f"{self.arch} with weighting greedy chooses its weights on the validation split, "
                                 f"which is empty; give the split a validation share or use weighting equal")
            self.weights = greedy_weights(val_probabilities, data.val_labels, self.params.greedy_rounds)
            log.info("[%s] greedy weights on validation: %s", options.name,
                     ", ".join(f"{plan.label(i)} {w:.3f}" for i, (plan, w) in enumerate(zip(self.plans, self.weights))))
        weights = self.member_weights()
        fits = [MemberFit(plan.label(index), {"arch": plan.arch, "seed": plan.seed, "weight": float(weight),
                                              **{f"training.{key}": value for key, value in plan.training.items()},
                                              **member.describe()}, result)
                for index, (plan, member, result, weight) in enumerate(zip(self.plans, self.members, results, weights))]
        # Every member predicts probabilities, so the ensemble's own validation log loss speaks for it.
        val_loss = log_loss(data.val_labels, self._combined(val_probabilities)) if val_probabilities else float("nan")
        return FitResult(fits[0].result.device, 0, val_loss, sum(f.result.epochs_run for f in fits), False,
                         sum(f.result.seconds for f in fits), members=fits)

    def member_weights(self) -> np.ndarray:
        """Each member's share of the mean: the greedy weights once fitted, else equal."""
        if self.weights is not None:
            return self.weights
        return np.full(len(self.members), 1.0 / len(self.members))

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        # A member the selection never added is not asked at all.
        return self._combined([member.predict_proba(batch) if weight > 0 else None
                               for member, weight in zip(self.members, self.member_weights())])

    def _combined(self, probabilities: list[np.ndarray | None]) -> np.ndarray:
        """The members' ``probabilities`` combined: their mean, or their greedy weighted sum (zero weights skipped)."""
        if self.weights is None:
            return np.mean(probabilities, axis=0)
        return sum(weight * member for member, weight in zip(probabilities, self.weights) if weight > 0)

    def save(self, folder: Path) -> None:
        weights = None if self.weights is None else self.weights.tolist()
        save_members(folder, {"arch": self.arch, "shape": dataclasses.asdict(self.shape),
                              "params": dataclasses.asdict(self.params), "weights": weights}, self.plans, self.members)

    @classmethod
    def load(cls, folder: Path) -> ClassifierEnsembleEstimator:
        spec, plans, members = load_members(folder, ClassifierMemberPlan)
        # Ensembles saved before weighting existed are plain means.
        weights = None if spec.get("weights") is None else np.asarray(spec["weights"], dtype=np.float64)
        return cls(ClassifierShape(**spec["shape"]), parse_params(cls.arch, spec["params"]), plans, members, weights)


def greedy_weights(probabilities: list[np.ndarray], labels: np.ndarray, rounds: int) -> np.ndarray:
    """Ensemble selection with replacement (Caruana et al. 2004): each member's share of the additions at the round
    whose mean of the added members' ``probabilities`` had the lowest log loss against ``labels``.

    Each round adds the member that gives the lowest loss; a tie goes to the earlier member.
    """
    counts, total = np.zeros(len(probabilities)), np.zeros_like(probabilities[0], dtype=np.float64)
    best_loss, best_counts = np.inf, counts
    for added in range(1, rounds + 1):
        losses = [log_loss(labels, (total + candidate) / added) for candidate in probabilities]
        choice = int(np.argmin(losses))
        counts = counts.copy()
        counts[choice] += 1
        total += probabilities[choice]
        if losses[choice] < best_loss:
            best_loss, best_counts = losses[choice], counts
    return best_counts / best_counts.sum()
