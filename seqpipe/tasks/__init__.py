"""The seam between the pipeline's shared steps and what each task does its own way.

``seqpipe.steps`` holds the steps every task shares (the MLflow runs, the training run
of one model, promotion, rollback, versions) and forecasting's own implementation of
the rest. A step whose work differs by task is decorated with ``task_step``: for
``task: classify`` the call goes to the function of the same name in
``seqpipe.tasks.classify.steps``, which has its own canonical form, preparation,
metrics, gate statistic and pyfunc signature. The CLI, the Prefect flow and the DVC
stages call the decorated step and never ask which task runs.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from seqpipe.errors import ConfigError

FORECAST = "forecast"
# Each task other than forecasting, and the module holding its implementations of the steps.
TASK_STEPS = {"classify": "seqpipe.tasks.classify.steps"}

Step = TypeVar("Step", bound=Callable[..., Any])


def implementation(task: str, step: str) -> Callable[..., Any] | None:
    """``task``'s own implementation of ``step``, or None when the task is forecasting."""
    if task == FORECAST:
        return None
    module = importlib.import_module(TASK_STEPS[task])
    found = getattr(module, step, None)
    if found is None:
        raise ConfigError(f"`{step}` is a forecasting step: task '{task}' has no such step")
    return found


def task_step(forecast: Step) -> Step:
    """Route a step to the configured task's implementation; ``forecast`` is forecasting's own."""
    @functools.wraps(forecast)
    def step(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        own = implementation(cfg.task, forecast.__name__)
        return (own or forecast)(cfg, *args, **kwargs)

    return step  # type: ignore[return-value]
