"""What a scripted model does, turn by turn, whatever API it speaks: a plan maps (gap id,
turn) to a step (call a tool, say something, hang, fail), and ``PlannedServer`` is the
base of every scripted server that plays one."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.model_servers.base import Reply, Request, ScriptedServer

GAP = re.compile(r"working on gap (\S+?)\. ")


@dataclass
class Tool:
    name: str
    input: dict[str, Any]


@dataclass
class Say:
    text: str


@dataclass
class Hang:
    """The model never answers (a stuck connection)."""


@dataclass
class Fail:
    status: int = 400
    message: str = "scripted failure"


Step = Tool | Say | Hang | Fail
Plan = Callable[[str, int], Step]


@dataclass
class PlannedServer(ABC):
    """A scripted model server: each request of an agent's main loop (its prompt names the
    gap) gets the plan's step for that gap and turn; side requests get ``idle``."""

    plan: Plan
    main_requests: list[tuple[str, int]] = field(default_factory=list)

    def start(self) -> ScriptedServer:
        return ScriptedServer(self.handle)

    @abstractmethod
    def handle(self, request: Request) -> Reply:
        """The reply to one request, in the wire format of the API this server plays."""

    def step_for(self, text: str, turn: int, main: bool = True, idle: str = "ok") -> Step:
        match = GAP.search(text)
        if not main or match is None:
            return Say(idle)
        self.main_requests.append((match.group(1), turn))
        return self.plan(match.group(1), turn)
