"""A ledger and the plan a command is about: the application's entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ledger.derived import readmodel
from ledger.errors import BadInput, Unknown
from ledger.locate import default_ledger, find_ledger, home_of, prepare_folder
from ledger.store import Ledger, Recorded
from machine.defaults import CONFIG_FILE
from machine.plan.model import Plan
from machine.plan.paths import PathGuard, check_plan_id
from machine.state import checked_config
from machine.state.checked_config import Settings
from machine.state.fold import PlanState, fold_version
from machine.state.rules import Rules

_STRUCTURES: dict[tuple[str, int], tuple[str, Plan]] = {}  # parsed once per process


@dataclass
class Workspace:
    ledger: Ledger
    plan_choice: str | None = None
    _configs: dict[str, tuple[tuple[int, int] | None, Settings]] = field(default_factory=dict)  # by plan: (stamp, it)

    @classmethod
    def open(cls, ledger_path: str | None = None, plan: str | None = None, *, create: bool = False) -> Workspace:
        if plan is not None:
            check_plan_id(plan)  # before anything is created: the id names folders under .kx/
        path = find_ledger(ledger_path)
        if path is None:
            if not create:
                raise BadInput("no ledger found here or above; run 'kx plan import PLAN.md' or pass --ledger PATH")
            path = default_ledger()
        if path.exists() and not path.is_file():
            raise BadInput(f"the ledger {path} is not a file; pass --ledger (or set $KX_LEDGER to) a kx ledger file")
        try:
            ledger = Ledger.open(path, create=create)
        except OSError as exc:  # e.g. its folder cannot be made: a file is in the way
            raise BadInput(f"cannot use the ledger {path} ({exc.strerror}); pass another --ledger") from None
        if create:
            prepare_folder(path)
        return cls(ledger, plan)

    @property
    def home(self) -> Path:
        return home_of(self.ledger.path)

    def plan_ids(self) -> list[str]:
        return self.ledger.plan_ids()

    def plan_id(self) -> str:
        """The plan named by ``--plan``, or the ledger's only plan."""
        ids = self.plan_ids()
        if self.plan_choice is not None:
            if self.plan_choice not in ids:
                known = ", ".join(ids) or "none"
                raise Unknown(f"no plan '{self.plan_choice}' in the ledger (plans: {known}); see 'kx plan list'")
            return self.plan_choice
        if not ids:
            raise Unknown("the ledger holds no plan yet; run 'kx plan import PLAN.md'")
        if len(ids) > 1:
            raise BadInput(f"the ledger holds {len(ids)} plans ({', '.join(ids)}); pick one with --plan ID")
        return ids[0]

    def config(self, plan_id: str | None = None) -> Settings:
        """The plan's configuration as the file says now: a long-lived workspace (``kx run``, a ``kx mcp``
        session) sees an edit at its next act."""
        plan_id = plan_id or self.plan_id()
        try:
            found = (self.ledger.path.parent / CONFIG_FILE).stat()
            stamp: tuple[int, int] | None = (found.st_mtime_ns, found.st_size)
        except FileNotFoundError:
            stamp = None
        cached = self._configs.get(plan_id)
        if cached is None or cached[0] != stamp:
            cached = self._configs[plan_id] = (stamp, checked_config.load(self.ledger.path.parent, plan_id))
        return cached[1]

    def state(self, *, until: int | None = None, until_time: str | None = None, plan_id: str | None = None,
              config: Settings | None = None) -> PlanState:
        """The plan's state now (read model + the events after it), or as it was (a fold up to then)."""
        plan_id = plan_id or self.plan_id()
        timezone = (config or self.config(plan_id)).timezone
        if until is None and until_time is None:
            saved = readmodel.load(self.ledger.conn, plan_id, fold_version())
            if saved is not None:
                state = PlanState.restore(plan_id, saved, loader=self._structure, timezone=timezone)
                return state if saved.current else state.fold_rows(self.ledger.scan(plan_id, since=state.position))
        rows = self.ledger.scan(plan_id, until=until, until_time=until_time)
        return PlanState(plan_id, timezone=timezone).fold_rows(rows)

    def _structure(self, position: int) -> tuple[str, Plan]:
        """The plan text and structure an event carries, parsed once per process (such an event never changes)."""
        key = (str(self.ledger.path.resolve()), position)
        if key not in _STRUCTURES:
            data = self.ledger.read(since=position - 1, until=position)[0].data
            _STRUCTURES[key] = (data["source"], Plan.from_dict(data["structure"]))
        return _STRUCTURES[key]

    def record(self, state: PlanState, events: list) -> list[Recorded]:
        """Append ``events``, fold them into ``state`` and save the read model, in one transaction.

        Inside a caller's transaction ``state`` is taken as folded under that lock (acts fold it there);
        otherwise it first catches up with what other processes appended.
        """
        caught_up = self.ledger.in_transaction
        with self.ledger.transaction():
            if not caught_up:
                state.fold_rows(self.ledger.scan(state.id, since=state.position))
            rows = self.ledger.append(events)
            for row in rows:
                state.apply(row)
            # a state folded from scratch has every PART dirty (its PlanImported touched them all): its rows
            # replace the plan's, whichever fold wrote them
            complete = state.dirty.issuperset(state.parts)
            plan_state, parts = state.snapshot(state.dirty)
            runs = state.runs(None if complete else state.runs_changed)
            readmodel.save(self.ledger.conn, state.id, fold_version(), state.position, state.structure_position,
                           plan_state if state.plan_changed or complete else None, parts, runs, complete=complete)
            state.dirty.clear()
            state.runs_changed.clear()
            state.plan_changed = False
        return rows

    def rules(self, state: PlanState, *, accept_failed: bool = False, config: Settings | None = None) -> Rules:
        config = config or self.config(state.id)
        return Rules(state, resolve=self.resolve, policy=config.evidence_policy, sources=config.sources_policy,
                     accept_failed=accept_failed, paths=lambda: self.guard(state))

    def guard(self, state: PlanState) -> PathGuard:
        """The guard of a plan in this ledger: its recorded root and plan file, this ledger."""
        return PathGuard.around(self.resolve(state.root), ledger=self.ledger.path,
                                plan=self.resolve(state.path) if state.path else None)

    def resolve(self, stored: str) -> Path:
        """A path as the ledger stores it (relative to the project folder, or absolute)."""
        path = Path(stored)
        return path if path.is_absolute() else self.home / path

    def store_path(self, path: Path) -> str:
        """How the ledger stores a path: relative to the project folder when inside it."""
        absolute = path.resolve()
        try:
            return absolute.relative_to(self.home).as_posix()
        except ValueError:
            return str(absolute)
