"""The values kx uses when nobody says otherwise, each written once (importable without pydantic: kx tick reads it)."""

from __future__ import annotations

SCHEMA = 1  # the version of every JSON object kx prints ({"schema": 1, ...})
PARALLEL_LIMIT = 6  # a plan's limit when its strategy line names none (CONTRACT section 1)
EVIDENCE_POLICY = "verified"  # what a PART needs to succeed (CONTRACT section 7)
SOURCES_POLICY = "checked"  # a Search tick's sources must be sources; "any": free text too
RETRIES = 1  # kx run's retries per PART after a failure or a loss
BACKOFF_S = 1.0  # kx run's wait before a PART's first retry (doubling after)
LEASE_S = 60.0  # a running attempt without a heartbeat this long is lost
MAX_LEASE_S = 86_400.0  # a wrapper beats every lease/3 seconds; a day without a beat is dead, not slow
SUPERVISOR = "kx run"  # who the supervisor and its wrappers act as in the ledger
MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS = 256, 10_000_000  # the range of context_tokens (a model's window)
CONFIG_FILE = "config.toml"  # the plans' settings, beside the ledger in .kx/
MAX_CONFIG_BYTES = 256 * 1024  # a larger config.toml is refused before it is parsed

# free text is bounded wherever it enters, CLI, MCP or a Ray node's relay alike (bytes of UTF-8)
TEXT_LIMIT = 4096  # a reason or a note
SOURCE_LIMIT = 2048  # one source of a Search tick
SOURCES_PER_TICK = 100
NAME_LIMIT = 1024  # a PART or box reference, a path

