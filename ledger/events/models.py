"""The ledger's events: immutable pydantic values, one class per CONTRACT event type.

Every event belongs to one plan and one stream: the plan's own stream, one per
batch, one per PART, so that runners on different PARTs never contend for the
same stream version.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ledger.events.checkboxes import CheckboxTicked, CheckboxUnticked
from ledger.events.vocabulary import EVENT_SCHEMA_VERSION, IMPORT


class Event(BaseModel):
    # defer_build: a command builds the validator of the events it records, not of all of them
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    schema_version: ClassVar[int] = EVENT_SCHEMA_VERSION
    plan: str

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def stream(self) -> str:
        return plan_stream(self.plan)

    def data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def plan_stream(plan: str) -> str:
    return f"plan:{plan}"


def batch_stream(plan: str, batch: int) -> str:
    return f"batch:{plan}:{batch}"


def part_stream(plan: str, part: str) -> str:
    return f"part:{plan}:{part}"


# --- plan stream -------------------------------------------------------------


class PlanImported(Event):
    path: str = Field(description="the plan file, relative to the ledger's project folder when inside it")
    root: str = Field(description="the folder drops and knowledge files must stay inside")
    sha256: str
    source: str = Field(description="the file's full text, BOM included: the plan rebuilds from events alone")
    structure: dict[str, Any] = Field(description="the parsed plan (machine.plan.Plan)")
    by: str = IMPORT


class PlanRevised(PlanImported):
    previous_sha256: str
    carried: int = Field(default=0, description="ticks carried over to boxes that still exist")
    dropped: list[str] = Field(default_factory=list, description="ticked boxes the new file no longer has")


class RunStarted(Event):
    """``kx run`` or ``kx resume`` began starting attempts, with the options it was given that shape them: what
    ``kx resume`` reuses. Never a secret: a key comes from an environment variable, which only the options name."""

    command: Literal["run", "resume"]
    by: str
    options: dict[str, Any] = Field(description="--runner (the spec as given), --model, --base-url, --retries,"
                                    " --max-parallel, --backoff, --executor, --ray-address: those given")


class SupervisorLeased(Event):
    """A supervisor (``kx run``, ``kx resume``) holds the plan: one at a time. It beats a heartbeat while it runs."""

    by: str
    pid: int
    pid_started: float = Field(description="the process's start time, to tell a reused pid")
    host: str
    took_over: dict[str, Any] | None = Field(default=None, description="the lease it took from a supervisor found"
                                             " gone: its pid, host and the position of its lease")


class SupervisorReleased(Event):
    """The supervisor holding the plan let it go (it ended; a killed one cannot say so: the next one takes over)."""

    by: str
    pid: int
    host: str


class PlanConsolidated(Event):
    paths: dict[str, str] = Field(default_factory=dict)
    commit: str | None = None
    by: str
    allowed_missing: list[str] | None = Field(default=None, description="files changed or gone that --allow-missing"
                                              " let through")


# --- batch streams -----------------------------------------------------------


class BatchEvent(Event):
    batch: int

    @property
    def stream(self) -> str:
        return batch_stream(self.plan, self.batch)


class BatchReviewed(BatchEvent):
    decision: Literal["approve", "reject"]
    by: str
    note: str | None = None
    parts: list[str] = Field(default_factory=list, description="PARTs sent back to pending by a rejection")
    drops: dict[str, str] = Field(default_factory=dict, description="drop path → sha256 of the drops reviewed")
    accepted_failed: list[str] = Field(default_factory=list)
    cleared: dict[str, dict[str, Any]] | None = Field(
        default=None, description="PART → the evidence the rejection cleared: {boxes: [ids], drop: path}")


# --- PART streams ------------------------------------------------------------


class PartEvent(Event):
    part: str
    attempt: str | None = None
    by: str | None = None

    @property
    def stream(self) -> str:
        return part_stream(self.plan, self.part)


class RunnerStarted(PartEvent):
    attempt: str
    runner: list[str] | None = None
    pid: int | None = None
    pid_started: float | None = Field(default=None, description="the process's start time, to tell a reused pid")
    host: str | None = None
    log: str | None = None
    executor: str | None = Field(default=None, description="where the runner ran when not in a local wrapper: 'ray'")
    owner_pid: int | None = Field(default=None, description="the supervisor process that holds the attempt's Ray task")
    owner_started: float | None = Field(default=None, description="that process's start time")
    rehearsal: bool | None = Field(default=None, description="the attempt runs kx's own rehearsal runner")


class DropRecorded(PartEvent):
    path: str
    sha256: str
    size: int


class RunnerSucceeded(PartEvent):
    completed_at: str | None = Field(default=None, description="the 'YYYY-MM-DD HH:MM' stamp; from the file on import")
    drop: dict[str, str] | None = Field(default=None, description="the drop (path, sha256) that was the evidence")
    target: dict[str, str] | None = Field(default=None, description="the target file (path, sha256) as checked")
    policy: str | None = Field(default=None, description="the evidence policy the success was checked under")
    overrides: dict[str, str] | None = Field(
        default=None, description="boxes counted without kx's own check: ref → 'person' or 'rehearsal'")


class RunnerFailed(PartEvent):
    reason: str
    exit_code: int | None = None
    log_tail: str | None = None
    last_output: str | None = Field(default=None, description="the last meaningful line the runner wrote"
                                    " (its stderr's, when it wrote one there), folded to one line")
    retry: bool | None = Field(default=None, description="false: the failure cannot succeed unchanged (the prompt"
                               " cannot fit the model's window), so kx run does not retry it; a person may")


class RunnerLost(PartEvent):
    reason: str
    last_output: str | None = Field(default=None, description="the last meaningful line in the runner's log when"
                                    " the attempt was found lost")


class PartRetried(PartEvent):
    reason: str | None = None


class PartReopened(PartEvent):
    """A person sends a settled PART (succeeded, failed or lost) back to pending, its evidence cleared."""

    by: str
    reason: str
    was: str = Field(description="the state the PART left")
    cleared: dict[str, Any] = Field(description="the evidence cleared: {boxes: [ids], drop: path}")
    withdrew_consolidation: bool | None = Field(default=None, description="the plan was consolidated: this reopening"
                                                " withdrew the consolidation, which the next kx consolidate redoes")


EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        PlanImported, PlanRevised, PlanConsolidated, RunStarted, SupervisorLeased, SupervisorReleased, BatchReviewed, RunnerStarted, CheckboxTicked,
        CheckboxUnticked, DropRecorded, RunnerSucceeded, RunnerFailed, RunnerLost, PartRetried, PartReopened,
    )
}


def load(type_name: str, data: dict[str, Any]) -> Event | CheckboxTicked:
    """The event model for a stored row, validated by pydantic."""
    return _adapter(EVENT_TYPES[type_name]).validate_python(data)


@cache
def _adapter(model: type) -> TypeAdapter:
    return TypeAdapter(model)
