"""Prefect flows: thin wrappers that chain the step functions of ``seqpipe.steps``."""

from seqpipe.environment import log_at_info

# A flow run a worker started has not been through the CLI: let the steps' INFO lines reach its logs.
log_at_info()
