"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""

import errno


class SeqpipeError(Exception):
    """Base class: the message alone must tell the user what broke and where."""

    exit_code = 1


class ConfigError(SeqpipeError):
    exit_code = 2


class SourceError(SeqpipeError):
    """The input could not be read into the canonical frame (file, column, parse)."""

    exit_code = 3


class DataValidationError(SeqpipeError):
    """The batch broke one or more expectations; nothing downstream was written."""

    exit_code = 4


class RegistryError(SeqpipeError):
    exit_code = 5


class PredictionError(SeqpipeError):
    exit_code = 6


class ProjectLockedError(SeqpipeError):
    """Another run holds the project's data folder (``seqpipe.locking``); this one wrote nothing."""

    exit_code = 7


class OrchestrationError(SeqpipeError):
    """Prefect could not run the flow (its temporary API server did not start, say)."""

    exit_code = 8


# A write that failed for want of space is the machine's fault, not the input's: the CLI
# reports it without a traceback under its own exit code (every output is swapped in whole,
# so nothing earlier was replaced).
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_FULL_EXIT_CODE = 9
