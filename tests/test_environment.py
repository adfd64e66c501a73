"""seqpipe.environment: the one list of quiet defaults, and the CLI's console logging."""

import logging
import subprocess
import sys

from conftest import REPO
from seqpipe.environment import LOGGERS, QUIET_DEFAULTS, ConsoleHandler, apply_quiet_defaults, configure_logging


def test_defaults_fill_gaps_and_keep_what_is_set():
    environ = {"DO_NOT_TRACK": "0", "PREFECT_LOGGING_EXTRA_LOGGERS": "mylib, flows"}
    apply_quiet_defaults(environ)
    assert environ["DO_NOT_TRACK"] == "0"
    assert environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert environ["PREFECT_LOGGING_EXTRA_LOGGERS"] == "mylib,flows,seqpipe"
    assert set(QUIET_DEFAULTS) <= set(environ)


def test_the_makefile_reads_the_same_list():
    env = {"PATH": "/usr/bin:/bin", "DO_NOT_TRACK": "0"}
    printed = subprocess.run([sys.executable, str(REPO / "seqpipe" / "environment.py")], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
    assert dict(word.split("=", 1) for word in printed) == {k: v for k, v in QUIET_DEFAULTS.items() if k != "DO_NOT_TRACK"}


def test_cli_logging_is_configured_once_and_writes_messages_to_stdout(capsys):
    configure_logging()
    configure_logging()
    for name in LOGGERS:
        handlers = [h for h in logging.getLogger(name).handlers if isinstance(h, ConsoleHandler)]
        assert len(handlers) == 1 and not logging.getLogger(name).propagate
    logging.getLogger("seqpipe.steps.data").info("ingested 3 rows")
    logging.getLogger("flows.pipeline").debug("not shown")
    captured = capsys.readouterr()
    assert captured.out == "ingested 3 rows\n" and captured.err == ""
