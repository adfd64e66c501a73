"""seqpipe: from sequence data to a forecaster serving in production."""

__version__ = "0.1.0"
