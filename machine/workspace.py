"""A ledger and the plan a command is about: the application's entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import BadInput, Unknown
from ledger.locate import default_ledger, find_ledger, home_of, prepare_folder
from ledger.store import Ledger
from machine.config import PlanConfig, load_config
from machine.rules import Rules
from machine.state import PlanState


@dataclass
class Workspace:
    ledger: Ledger
    plan_choice: str | None = None
    _configs: dict[str, PlanConfig] = field(default_factory=dict)

    @classmethod
    def open(cls, ledger_path: str | None = None, plan: str | None = None, *, create: bool = False) -> Workspace:
        path = find_ledger(ledger_path)
        if path is None:
            if not create:
                raise BadInput("no ledger found here or above; run 'kx plan import PLAN.md' or pass --ledger PATH")
            path = default_ledger()
        ledger = Ledger.open(path, create=create)
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

    def config(self, plan_id: str | None = None) -> PlanConfig:
        plan_id = plan_id or self.plan_id()
        if plan_id not in self._configs:
            self._configs[plan_id] = load_config(self.ledger.path.parent, plan_id)
        return self._configs[plan_id]

    def state(self, *, until: int | None = None, until_time: str | None = None) -> PlanState:
        plan_id = self.plan_id()
        events = self.ledger.read(plan=plan_id, until=until, until_time=until_time)
        return PlanState.fold(plan_id, events, timezone=self.config(plan_id).timezone)

    def rules(self, state: PlanState, *, accept_failed: bool = False) -> Rules:
        return Rules(state, resolve=self.resolve, require_all_ticked=self.config(state.id).require_all_ticked,
                     accept_failed=accept_failed)

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
