"""The plan's kx configuration: ``.kx/config.toml`` beside the ledger.

    [defaults]                 # every plan
    evidence = "verified"      # what a PART needs to succeed (CONTRACT section 7): "verified" (the default),
                               # "ticked" (every box ticked, nothing checked) or "drop" (a drop only)
    require_all_ticked = true  # deprecated: false means evidence = "drop"; evidence wins when both are set
    timezone = "UTC"           # for Completed stamps
    runner = ["rehearse"]      # kx run's default --runner, as an argument list
    model = "llama3.1"         # kx run --runner openai: default --model and --base-url
    base_url = "http://127.0.0.1:11434/v1"
    retries = 1                # kx run's default --retries
    lease_seconds = 60         # a running attempt without a heartbeat this long is lost
    executor = "local"         # kx run's default --executor: "local" or "ray"

    [defaults.ray]             # kx run --executor ray (README, "Running on a Ray cluster")
    address = "ray://head:10001"   # default --ray-address (after $RAY_ADDRESS)
    num_cpus = 1               # what each attempt's Ray task asks for
    num_gpus = 0
    memory = 2_000_000_000     # bytes
    resources = { agent = 1 }  # custom resources
    shared_root = false        # the plan's root is at the same path on every node: nothing is copied
    ship = ["notes/*.md"]      # more files (globs under the root) sent with each task

    [plans.my-plan]            # one plan, by id; overrides [defaults] (a table key by key)
    timezone = "Europe/Berlin"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledger.errors import BadInput

FILENAME = "config.toml"


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    address: str | None = None
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    memory: int | None = Field(default=None, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    shared_root: bool = False
    ship: list[str] = Field(default_factory=list)


class PlanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    evidence: Literal["verified", "ticked", "drop"] | None = None
    require_all_ticked: bool | None = None  # deprecated (before evidence): false is "drop"
    timezone: str | None = None
    runner: list[str] | None = None
    model: str | None = None
    base_url: str | None = None
    retries: int | None = None
    lease_seconds: float | None = None
    executor: Literal["local", "ray"] | None = None
    ray: RayConfig | None = None  # None: Ray's defaults (one CPU per attempt), see RayConfig

    @property
    def evidence_policy(self) -> str:
        return evidence_policy(self.evidence, self.require_all_ticked)

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


def evidence_policy(evidence: str | None, require_all_ticked: bool | None) -> str:
    """The evidence policy a configuration sets: ``evidence``, else the deprecated ``require_all_ticked = false``
    as "drop", else "verified"."""
    if evidence is not None:
        return evidence
    return "drop" if require_all_ticked is False else "verified"


def load_config(ledger_folder: Path, plan_id: str) -> PlanConfig:
    path = ledger_folder / FILENAME
    if not path.is_file():
        return PlanConfig.model_construct()  # the defaults; nothing to validate
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        defaults, own = raw.get("defaults", {}), raw.get("plans", {}).get(plan_id, {})
        merged = {**defaults, **own}
        for key, value in own.items():  # a table in both ([defaults.ray], [plans.ID.ray]): key by key
            if isinstance(value, dict) and isinstance(defaults.get(key), dict):
                merged[key] = {**defaults[key], **value}
        return PlanConfig.model_validate(merged)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid TOML ({exc}); fix it or remove it") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{path}: {where}: {first['msg']}") from None
