"""Save and load a network (forecaster or classifier) as plain JSON plus a state dict: loading never unpickles code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from seqpipe.models import ProblemShape, build_model
from seqpipe.models.base import TrainableModel
from seqpipe.models.classifiers import CLASSIFIERS, ClassifierShape, build_classifier

SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"


def save_model(model: TrainableModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "arch": model.arch,
        "shape": dataclasses.asdict(model.shape),
        "params": dataclasses.asdict(model.params),
    }
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)


def load_model(folder: Path, map_location: str | torch.device = "cpu") -> TrainableModel:
    spec = json.loads((folder / SPEC_FILE).read_text())
    # The arch says which task's shape the spec holds: classifiers have their own catalog.
    if spec["arch"] in CLASSIFIERS:
        model = build_classifier(spec["arch"], ClassifierShape(**spec["shape"]), spec["params"])
    else:
        model = build_model(spec["arch"], ProblemShape(**spec["shape"]), spec["params"])
    state = torch.load(folder / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval()
