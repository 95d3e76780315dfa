"""Names every layer shares about events, importable without pydantic (``kx tick`` stays light)."""

from __future__ import annotations

IMPORT = "import"  # the actor of history taken as it was from an imported plan file
EVENT_SCHEMA_VERSION = 1  # the version of the events' data this kx writes (older rows are upcast on read)
