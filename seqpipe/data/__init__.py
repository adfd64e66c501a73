"""Sources, the canonical frame, validation and preparation."""

CANONICAL_COLUMNS = ("series_id", "timestamp", "value")
