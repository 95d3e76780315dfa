"""The plan's kx configuration: ``.kx/config.toml`` beside the ledger.

    [defaults]                 # every plan
    require_all_ticked = true  # evidence policy: every box ticked before success
    timezone = "UTC"           # for Completed stamps
    runner = ["rehearse"]      # kx run's default --runner, as an argument list
    model = "llama3.1"         # kx run --runner openai: default --model and --base-url
    base_url = "http://127.0.0.1:11434/v1"
    retries = 1                # kx run's default --retries
    lease_seconds = 60         # a running attempt without a heartbeat this long is lost

    [plans.my-plan]            # one plan, by id; overrides [defaults]
    timezone = "Europe/Berlin"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ledger.errors import BadInput

FILENAME = "config.toml"


class PlanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    require_all_ticked: bool = True
    timezone: str | None = None
    runner: list[str] | None = None
    model: str | None = None
    base_url: str | None = None
    retries: int | None = None
    lease_seconds: float | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


def load_config(ledger_folder: Path, plan_id: str) -> PlanConfig:
    path = ledger_folder / FILENAME
    if not path.is_file():
        return PlanConfig.model_construct()  # the defaults; nothing to validate
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        merged = {**raw.get("defaults", {}), **raw.get("plans", {}).get(plan_id, {})}
        return PlanConfig.model_validate(merged)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid TOML ({exc}); fix it or remove it") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{path}: {where}: {first['msg']}") from None
