"""The one digest of structured data (configs, step inputs, run keys): SHA-256 of its sorted JSON.

Standard library only, so the config module can use it too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SHORT_DIGEST_LENGTH = 16


def json_digest(payload: Any) -> str:
    """SHA-256 (hex) of ``payload`` as JSON with sorted keys; values JSON cannot hold are written as ``str``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def short_digest(payload: Any) -> str:
    """The first characters of ``json_digest``: enough to tell configs and runs apart in a tag."""
    return json_digest(payload)[:SHORT_DIGEST_LENGTH]
