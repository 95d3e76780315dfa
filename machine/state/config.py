"""The plan's kx configuration: ``.kx/config.toml`` beside the ledger.

    [defaults]                 # every plan
    evidence = "verified"      # what a PART needs to succeed (CONTRACT section 7): "verified" (the default),
                               # "ticked" (every box ticked, nothing checked) or "drop" (a drop only)
    require_all_ticked = true  # deprecated: false means evidence = "drop"; evidence wins when both are set
    sources = "checked"        # a Search tick's sources: URLs, DOIs, arXiv ids or files in the root ("checked",
                               # the default), or any text ("any"; the tick records that it was taken so)
    timezone = "UTC"           # for Completed stamps
    runner = ["rehearse"]      # kx run's default --runner, as an argument list
    model = "llama3.1"         # kx run --runner openai: default --model and --base-url
    base_url = "http://127.0.0.1:11434/v1"
    retries = 1                # kx run's default --retries
    lease_seconds = 60         # a running attempt without a heartbeat this long is lost (> 0, at most a day)
    executor = "local"         # kx run's default --executor: "local" or "ray"
    search_command = ["my-search", "--json-lines", "{query}"]  # the openai runner's search backend: one source
                               # per non-empty line it prints; "{query}" is replaced by the query (no shell)
    context_tokens = 8192      # the openai runner's context window (its --context wins; default: the server's)

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

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledger.errors import BadInput
from machine.defaults import CONFIG_FILE, MAX_CONFIG_BYTES, MAX_CONTEXT_TOKENS, MAX_LEASE_S, MIN_CONTEXT_TOKENS

# TOML has types: a number is not taken for a boolean, nor "3" for 3 (strict), and no setting is inf or nan.
STRICT = ConfigDict(extra="forbid", strict=True, defer_build=True)
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1)]
MAX_CONFIG_DEPTH = 32


class RayConfig(BaseModel):
    model_config = STRICT

    address: Text | None = None
    num_cpus: Amount | None = None
    num_gpus: Amount | None = None
    memory: int | None = Field(default=None, ge=0)
    resources: dict[str, Amount] = Field(default_factory=dict)
    shared_root: bool = False
    ship: list[Text] = Field(default_factory=list)

    @field_validator("ship")
    @classmethod
    def _inside_the_root(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:  # each file found is checked again when it is sent
            if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
                raise ValueError(f"{pattern!r} must be a glob relative to the plan's root, without '..'")
        return patterns


class PlanConfig(BaseModel):
    model_config = STRICT

    evidence: Literal["verified", "ticked", "drop"] | None = None
    require_all_ticked: bool | None = None  # deprecated (before evidence): false is "drop"
    sources: Literal["checked", "any"] | None = None
    timezone: str | None = None
    runner: list[Text] | None = Field(default=None, min_length=1)
    model: Text | None = None
    base_url: str | None = None
    retries: int | None = Field(default=None, ge=0)
    lease_seconds: float | None = Field(default=None, gt=0, le=MAX_LEASE_S, allow_inf_nan=False)
    executor: Literal["local", "ray"] | None = None
    search_command: list[Text] | None = Field(default=None, min_length=1)
    context_tokens: int | None = Field(default=None, ge=MIN_CONTEXT_TOKENS, le=MAX_CONTEXT_TOKENS)
    ray: RayConfig | None = None  # None: Ray's defaults (one CPU per attempt), see RayConfig

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

    @field_validator("search_command")
    @classmethod
    def _takes_the_query(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not any("{query}" in part for part in value):
            raise ValueError('the command needs "{query}" where the query goes, e.g. ["my-search", "{query}"]')
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("a server's address starts with http:// or https://")
        return value


class ConfigFile(BaseModel):
    """The file's shape: ``[defaults]`` and ``[plans.ID]`` tables, each checked as a :class:`PlanConfig`."""

    model_config = STRICT

    defaults: dict[str, Any] = Field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load_config(ledger_folder: Path, plan_id: str, content: bytes | None = None) -> PlanConfig:
    """The plan's settings from the file's ``content`` (read from it when not given), checked."""
    path = ledger_folder / CONFIG_FILE
    if content is None and not path.is_file():
        return PlanConfig.model_construct()  # the defaults; nothing to validate
    try:
        raw = ConfigFile.model_validate(tomllib.loads(bounded_text(path, content)))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid TOML ({exc}); fix it or remove it") from None
    except ValidationError as exc:
        raise _bad_setting(path, exc, []) from None
    own = raw.plans.get(plan_id, {})
    try:
        return PlanConfig.model_validate(_merged(raw.defaults, own))
    except ValidationError as exc:
        table = ["plans", plan_id] if exc.errors()[0]["loc"][0] in own else ["defaults"]
        raise _bad_setting(path, exc, table) from None


def bounded_text(path: Path, raw: bytes | None = None) -> str:
    """The file's text (``raw``: its bytes as read already), refused (exit 2) before TOML reads it when it is
    larger or nests deeper than any configuration needs: tomllib recurses once per nested array or table, and a
    dotted key of n parts costs it n² (a 100 KB key takes gigabytes)."""
    if raw is None:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise BadInput(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB, more than any kx configuration"
                       " needs; shorten it")
    text = raw.decode("utf-8")
    if (line := too_deep(text)) is not None:
        raise BadInput(f"{path} line {line} nests deeper than {MAX_CONFIG_DEPTH} levels (tables, arrays and the"
                       " parts of dotted keys together); flatten it")
    return text


# The tokens that nest: brackets, braces, the dots of keys; strings and comments are skipped whole
_TOML_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'  # multi-line basic string
    r"|'''.*?'''"  # multi-line literal string
    r'|"(?:[^"\\\n]|\\.)*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*"  # comment
    r"|[\[\]{}=,.\n]",
    re.DOTALL,
)


def too_deep(text: str) -> int | None:
    """The first line (1-based) at which TOML ``text`` nests deeper than MAX_CONFIG_DEPTH, or None.

    One pass over the tokens, nothing built. A key's depth is the depth it is written at (the parts of the
    table header in force, or the inline table it is in) plus its own parts; a value's is its key's, plus one
    for each array or inline table open around it."""
    outer, parts, level, in_key, line = 0, 0, 0, True, 1
    open_: list[tuple[str, int, int]] = []  # (bracket, outer, level) to restore when it closes; "h": a header
    for token in _TOML_TOKEN.finditer(text):
        kind = token.group()
        if kind == "\n":
            line += 1
            if not open_:
                in_key, parts = True, 0
        elif kind == "[" and in_key and all(bracket == "h" for bracket, _, _ in open_):  # [table], [[array]]
            open_.append(("h", 0, 0))
            outer, parts = 0, 0
        elif kind == "[" or kind == "{":
            open_.append((kind, outer, level))
            if kind == "{":
                outer, parts, in_key = level, 0, True
            else:
                level += 1
        elif kind == "]" or kind == "}":
            if open_:
                bracket, saved_outer, saved_level = open_.pop()
                if bracket == "h":
                    outer, parts = (parts + 1, 0) if not open_ else (outer, parts)
                else:
                    outer, level = saved_outer, saved_level
            in_key = False
        elif kind == "=":
            level, in_key = outer + parts + 1, False
        elif kind == "," and open_ and open_[-1][0] == "{":
            in_key, parts = True, 0
        elif kind == "." and in_key:
            parts += 1
        else:  # a string, a comment, a dot in a value (a number, a time)
            line += kind.count("\n")
            continue
        if (outer + parts + 1 if in_key else level) > MAX_CONFIG_DEPTH:
            return line
    return None


def _merged(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **own}
    for key, value in own.items():  # a table in both ([defaults.ray], [plans.ID.ray]): key by key
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = {**defaults[key], **value}
    return merged


def _bad_setting(path: Path, exc: ValidationError, table: list[str]) -> BadInput:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in [*table, *first["loc"]])
    shown = f" = {first['input']!r}" if first["type"] != "extra_forbidden" and not isinstance(first["input"], dict) else ""
    message = first["msg"].removeprefix("Value error, ")
    return BadInput(f"{path}: {where}{shown}: {message[:1].lower()}{message[1:]}; fix it or remove it")
