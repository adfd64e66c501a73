"""Sequence classification (``task: classify``): one label per sequence, speech frames or sensor recordings.

``steps`` implements the steps that differ from forecasting (see ``seqpipe.tasks``);
``inputs`` and ``pyfunc_model`` are what a registered classifier reads and serves.
"""
