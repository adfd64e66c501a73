"""The process environment seqpipe runs in: the one place for quiet defaults and console logging.

``QUIET_DEFAULTS`` are the variables every seqpipe process (the CLI, the tests, the DVC
stages, Prefect workers started by ``seqpipe worker``) sets before a library reads them:
no telemetry (there is no network here or in CI), no artifact progress bars, and
Prefect attaching its run-log handler to the ``seqpipe`` and ``flows`` loggers, so the
steps' log lines land in the flow run's logs. A value already in the environment wins.

Library code only logs (``logging.getLogger(__name__)``); ``configure_logging`` is what
the CLI calls once to show those records to the user. Nothing here imports more than the
standard library, so it is safe to import before torch, MLflow, GX or Prefect, and
``python seqpipe/environment.py`` prints the defaults as ``NAME=value`` for the Makefile.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping

# The packages whose loggers are seqpipe's own.
LOGGERS = ("seqpipe", "flows")
EXTRA_LOGGERS = "PREFECT_LOGGING_EXTRA_LOGGERS"

QUIET_DEFAULTS: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Prefect reads these once, when it is first imported: set them before that.
    EXTRA_LOGGERS: ",".join(LOGGERS),
    # The steps also run outside any flow (`seqpipe ingest`, the DVC stages, the tests):
    # there Prefect's handler on our loggers has no run to send to, which is expected.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def quiet_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with the quiet defaults it lacks, e.g. for a subprocess."""
    environ = dict(os.environ if base is None else base)
    apply_quiet_defaults(environ)
    return environ


def apply_quiet_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Set each default that ``environ`` (default ``os.environ``) does not set already.

    Extra loggers someone configured are kept, and seqpipe's are added to them.
    """
    environ = os.environ if environ is None else environ
    for name, value in QUIET_DEFAULTS.items():
        if name == EXTRA_LOGGERS and environ.get(name):
            present = [logger.strip() for logger in environ[name].split(",") if logger.strip()]
            environ[name] = ",".join(dict.fromkeys([*present, *LOGGERS]))
        else:
            environ.setdefault(name, value)


class ConsoleHandler(logging.StreamHandler):
    """A message-only handler on whatever ``sys.stdout`` is when a record arrives.

    Looked up at each record, not bound once: pytest's capture and Typer's test runner
    swap ``sys.stdout`` after the CLI has configured logging.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Show seqpipe's log records on stdout, one message per line, as the commands printed them.

    Called once by the CLI at startup; calling it again changes nothing. The records do
    not propagate to the root logger, where Prefect's console handler would print them a
    second time; the handler Prefect adds to these loggers (``PREFECT_LOGGING_EXTRA_LOGGERS``)
    still sends them to the flow run's logs.
    """
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(handler, ConsoleHandler) for handler in logger.handlers):
            logger.addHandler(ConsoleHandler())
        logger.propagate = False


def log_at_info() -> None:
    """Let seqpipe's INFO records through where nothing configured their level (a flow run a worker started).

    Prefect gives these loggers its handlers but not a level, so without this they would
    inherit the root logger's WARNING and the steps' progress would never reach the run's logs.
    """
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


if __name__ == "__main__":
    # For the Makefile: the defaults its environment does not set already, as NAME=value words.
    print(" ".join(f"{name}={value}" for name, value in quiet_environment().items() if name in QUIET_DEFAULTS
                   and os.environ.get(name) != value))
