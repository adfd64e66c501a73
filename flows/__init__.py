"""Prefect flows: thin wrappers that chain the step functions of ``seqpipe.steps``."""
