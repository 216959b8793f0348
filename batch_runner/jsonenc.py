"""Shared JSON encoders: `json.dumps` with any option builds a new encoder on every call,
which shows when it runs several times per job."""

from __future__ import annotations

import json

# unicode kept, field order kept: what the state file and metadata.jsonl store
text = json.JSONEncoder(ensure_ascii=False).encode
# sorted keys, no spaces: the form job keys and duplicate checks hash
canonical = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
