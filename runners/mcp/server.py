"""``kx mcp``: a runner's commands as Model Context Protocol tools, served on stdio (CONTRACT section 9).

A tool call is the command itself: its arguments, checked as the CLI checks them, go to the command's function
(``runners.commands``, which the CLI calls too), run in this process on the workspace the session holds. So a call
has the command's rules, transactions and attempt checks, and reads the state other processes appended (each
command re-reads it from the read model), without an interpreter's start. A result is the JSON object
``kx --json COMMAND`` prints; a refusal or bad input is a tool error whose text is ``exit N: message``. Each tool
is described by its command's help (given by ``cli.main``: this package does not import the CLI). The brief is
also a resource (``kx://brief/PART-7``), and the worker's instructions with it a prompt (``worker``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import anyio
from mcp import types
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from ledger import logs
from ledger.errors import BadInput, as_kx_error
from machine.acts.queries import known_attempt
from machine.acts.workspace import Workspace
from machine.plan.model import AttemptId
from machine.plan.text import printable
from runners import commands

# The CLI's commands as ``cli.main`` offers them: name -> (help, option names).
Commands = Mapping[str, tuple[str, frozenset[str]]]

BRIEF_URI = "kx://brief/"
INSTRUCTIONS = ("kx runs a knowledge-expansion plan. Read your PART's brief (the brief tool, or the resource "
                "kx://brief/PART), tick each box as you finish it (tick), record the KNOWLEDGE DROP once written "
                "(drop), then finish; fail with a reason if you cannot. Each tool is the kx command of that name.")


@dataclass(frozen=True)
class Argument:
    """A tool's argument: a string or a list of strings, given to the command as an option or positionally."""

    name: str
    description: str
    many: bool = False  # a list of strings
    option: str | None = None  # the command's option; None: positional, in the order of the tool's arguments
    required: bool = False

    def schema(self) -> dict[str, Any]:
        text = {"type": "string"}
        if not self.many:
            return {**text, "description": self.description}
        return {"type": "array", "items": text, "description": self.description,
                **({"minItems": 1} if self.required else {})}

    def values(self, tool: str, value: Any) -> list[str]:
        if self.many and isinstance(value, list) and all(isinstance(v, str) for v in value):
            if self.required and not value:
                raise BadInput(f"{tool}: '{self.name}' needs at least one item ({self.description})")
            return value
        if not self.many and isinstance(value, str):
            return [value]
        kind = "a list of strings" if self.many else "a string"
        raise BadInput(f"{tool}: '{self.name}' must be {kind}, not {json.dumps(value)[:80]}")


PART = Argument("part", "The PART: PART-7 or 7.", required=True)
ATTEMPT = Argument("attempt", "The attempt, e.g. PART-7#1 (default: the session's --attempt or $KX_ATTEMPT; "
                   "with none, the act is a person's).", option="--attempt")
REFS = Argument("refs", "The boxes: 3 (the third box), 2.4 (step 2, fourth box) or a box's text.", many=True,
                required=True)
SOURCES = Argument("sources", "For a Search box: the URLs or texts the search found.", many=True, option="--source")
PATH = Argument("path", "The file, inside the plan's root (a relative path is read from this server's folder).",
                required=True)
REASON = Argument("reason", "Why it failed.", option="--reason", required=True)

def _object(*required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """A tool's output schema: the fields the JSON object of ``kx --json COMMAND`` always has (others may follow)."""
    fields = {"schema": {"type": "integer", "const": 1}, **properties}
    return {"type": "object", "properties": fields, "required": ["schema", *required]}


TEXT, NUMBER, FLAG = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TEXTS, OBJECTS = {"type": "array", "items": TEXT}, {"type": "array", "items": {"type": "object"}}
OUTCOME = _object("part", "recorded", "message", part=TEXT, recorded=TEXTS, message=TEXT)
OUTPUTS: dict[str, dict[str, Any]] = {
    "status": _object("plan", "limit", "running", "batches", plan=TEXT, limit=NUMBER, running=TEXTS, batches=OBJECTS),
    "next": _object("parts", parts=TEXTS, running=NUMBER, limit=NUMBER),
    "brief": _object("plan", "part", "title", "state", "boxes", plan=TEXT, part=TEXT, title=TEXT, state=TEXT,
                     boxes=OBJECTS, target={"type": ["string", "null"]}, drop_path={"type": ["string", "null"]}),
    "check": _object("part", "ok", "boxes", "target", "drop", "missing", part=TEXT, ok=FLAG, boxes=OBJECTS,
                     target={"type": "object"}, drop={"type": "object"}, missing=TEXTS),
    "start": _object("part", "attempt", part=TEXT, attempt=TEXT),
    **{name: OUTCOME for name in ("tick", "untick", "drop", "finish", "fail")},
}
READ_ONLY = frozenset({"status", "next", "brief", "check"})
# a command a refusal names, and the CLI's options, as the tool calls and arguments that do the same
COMMAND = re.compile(r"kx (?P<tool>tick|untick|drop|finish|fail|check|brief|start) (?P<part>PART-\d+)"
                     r"(?P<rest>(?: (?:[0-9][\w.]*|FILE))*)(?P<options>(?: --(?:source|attempt|reason)(?:=| )[A-Z]+)*)")
AS_ARGUMENTS = [(re.compile(r"--source(?:=| )URL"), "sources: [URL]"), (re.compile(r"--source\b"), "sources"),
                (re.compile(r"--attempt(?:=| )ID"), "attempt: ID"), (re.compile(r"--attempt\b"), "attempt"),
                (re.compile(r"--reason(?:=| )TEXT"), "reason: TEXT"), (re.compile(r"--reason\b"), "reason")]

# each tool's arguments, by the name its command's function takes them
TOOLS: dict[str, tuple[Argument, ...]] = {
    "status": (),
    "next": (),
    "brief": (PART, ATTEMPT),
    "check": (PART, ATTEMPT),
    "start": (PART,),
    "tick": (PART, REFS, SOURCES, ATTEMPT),
    "untick": (PART, REFS, SOURCES, ATTEMPT),
    "drop": (PART, PATH, ATTEMPT),
    "finish": (PART, ATTEMPT),
    "fail": (PART, REASON, ATTEMPT),
}
CALLS: dict[str, Callable[..., dict[str, Any]]] = {
    "status": commands.status, "next": commands.next_parts, "brief": commands.brief, "check": commands.check,
    "start": commands.start, "tick": commands.tick, "untick": commands.untick, "drop": commands.drop,
    "finish": commands.finish, "fail": commands.fail,
}


class Session:
    """What a ``kx mcp`` process holds: the workspace (its open ledger), the CLI's commands, the default attempt."""

    def __init__(self, workspace: Workspace, commands: Commands, attempt: str | None):
        self.workspace, self.commands, self.attempt = workspace, commands, attempt

    def tools(self) -> list[types.Tool]:
        return [types.Tool(name=name, description=self._help(name), input_schema=_input_schema(arguments),
                           output_schema=OUTPUTS[name], annotations=types.ToolAnnotations(read_only_hint=name in READ_ONLY))
                for name, arguments in TOOLS.items()]

    def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            given = self.call_arguments(tool, arguments)
            result = CALLS[tool](self.workspace, **given)
        except Exception as exc:  # noqa: BLE001 - every failure is the tool's error, as the CLI says it
            error = as_kx_error(exc)
            message = " ".join(error.message.split())
            logs.get().error("tool failed", tool=tool, code=error.code, message=message)
            return _tool_error(error.code, message, error.details)
        payload = json.dumps({"schema": 1, **result}, ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(text=payload)], structured_content=json.loads(payload))

    def call_arguments(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's arguments as its command's function takes them (checked, one line if not)."""
        if tool not in TOOLS:
            raise BadInput(f"no tool '{tool}' (tools: {', '.join(TOOLS)})")
        if tool not in self.commands:
            raise BadInput(f"'{tool}' is not available in this kx (it has no 'kx {tool}' command)")
        spec = TOOLS[tool]
        unknown = sorted(set(arguments) - {argument.name for argument in spec})
        if unknown:
            raise BadInput(f"{tool} takes no argument {', '.join(map(repr, unknown))}"
                           f" (its arguments: {', '.join(a.name for a in spec) or 'none'})")
        given = {}
        for argument in spec:
            value, implied = arguments.get(argument.name), False
            if argument is ATTEMPT and not value:
                value, implied = self.attempt, True
            if value is None:
                if argument.required:
                    raise BadInput(f"{tool} needs '{argument.name}': {argument.description}")
                continue
            values = argument.values(tool, value)
            if argument.option is not None and argument.option not in self.commands[tool][1]:
                if implied:
                    continue
                raise BadInput(f"'kx {tool}' takes no {argument.option} in this kx; leave out '{argument.name}'")
            given[argument.name] = values if argument.many else values[0]
        return given

    def brief_text(self, part: str) -> str:
        """``kx brief PART`` as it prints for a person: the markdown."""
        from machine.acts.queries import brief_markdown

        own = part == self.own_part() and self.attempt
        try:
            view = commands.brief(self.workspace, part, self.attempt if own else None)
        except Exception as exc:  # noqa: BLE001 - said as the CLI says it
            error = as_kx_error(exc)
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"exit {error.code}: {printable(' '.join(error.message.split()))}") from None
        return printable(brief_markdown(view)) + "\n"

    def own_part(self) -> str | None:
        """The PART of the session's attempt (``PART-7#1``: ``PART-7``)."""
        parsed = AttemptId.parse(self.attempt) if self.attempt else None
        return parsed.part if parsed else None

    def _help(self, tool: str) -> str:
        help_text = self.commands.get(tool, ("",))[0].strip()
        return help_text or f"'kx {tool}' (not available in this kx)"


def _input_schema(arguments: tuple[Argument, ...]) -> dict[str, Any]:
    return {"type": "object", "properties": {a.name: a.schema() for a in arguments},
            "required": [a.name for a in arguments if a.required], "additionalProperties": False}


def in_tool_words(message: str) -> str:
    """A refusal as an MCP client reads it: tool calls and their arguments where the CLI's text names commands and
    options (``kx tick PART-1 1.1 --source URL`` → ``tick (part: PART-1, refs: [1.1], sources: [URL])``)."""
    message = COMMAND.sub(_as_call, message)
    for option, argument in AS_ARGUMENTS:
        message = option.sub(argument, message)
    return message


def _as_call(command: re.Match[str]) -> str:
    given = [f"part: {command['part']}"]
    rest = command["rest"].split()
    if rest == ["FILE"]:
        given.append("path: FILE")
    elif rest:
        given.append(f"refs: [{', '.join(rest)}]")
    if command["options"]:
        given.append(command["options"].strip())
    return f"{command['tool']} ({', '.join(given)})"


def _tool_error(code: int, message: str, details: list[str] | None = None) -> types.CallToolResult:
    message = in_tool_words(message)
    error = {"code": code, "message": message, **({"details": details} if details else {})}
    return types.CallToolResult(content=[types.TextContent(text=f"exit {code}: {message}")],
                                structured_content={"schema": 1, "error": error}, is_error=True)


def server(session: Session, version: str = "") -> Server:
    """The MCP server: the tools, the brief as a resource, the worker's instructions as a prompt."""

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=session.tools())

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        return session.call(params.name, params.arguments or {})  # to the end without awaiting: one call at a time

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        part = session.own_part()
        own = [types.Resource(uri=BRIEF_URI + part, name=f"brief {part}", mime_type="text/markdown",
                              description=f"The brief of {part}, attempt {session.attempt}")] if part else []
        return types.ListResourcesResult(resources=own)

    async def list_resource_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=BRIEF_URI + "{part}", name="brief", mime_type="text/markdown",
            description="A PART's brief: instructions, its section, target, drop file, files to cite, boxes")])

    async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if not uri.startswith(BRIEF_URI) or uri == BRIEF_URI:
            raise MCPError(code=types.INVALID_PARAMS, message=f"exit 4: no resource {uri} (resources: {BRIEF_URI}PART)")
        text = session.brief_text(uri.removeprefix(BRIEF_URI))
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text=text,
                                                                             mime_type="text/markdown")])

    async def list_prompts(ctx, params) -> types.ListPromptsResult:
        part = types.PromptArgument(name="part", description="The PART (default: the session's attempt's)",
                                    required=session.attempt is None)
        return types.ListPromptsResult(prompts=[types.Prompt(
            name="worker", description="The worker's instructions and the PART's brief, to do the PART",
            arguments=[part])])

    async def get_prompt(ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != "worker":
            raise MCPError(code=types.INVALID_PARAMS, message=f"exit 4: no prompt '{params.name}' (prompts: worker)")
        part = (params.arguments or {}).get("part") or session.own_part()
        if not part:
            raise MCPError(code=types.INVALID_PARAMS, message="exit 2: worker needs 'part' (this session has no attempt)")
        text = (f"You do {part} of a kx plan. {INSTRUCTIONS}\n\n" + session.brief_text(part))
        return types.GetPromptResult(description=f"Do {part}", messages=[
            types.PromptMessage(role="user", content=types.TextContent(text=text))])

    return Server("kx", version=version, instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool,
                  on_list_resources=list_resources, on_list_resource_templates=list_resource_templates,
                  on_read_resource=read_resource, on_list_prompts=list_prompts, on_get_prompt=get_prompt)


def serve(workspace: Workspace, commands: Commands, *, attempt: str | None = None, version: str = "") -> None:
    """Serve the session on this process's stdin and stdout until the client closes them. A plan the ledger lacks
    (or several, none named) and an ``attempt`` it never recorded are refused now, not at every call."""
    workspace.plan_id()
    mcp_server = server(Session(workspace, commands, known_attempt(workspace, attempt) if attempt else None), version)

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await mcp_server.run(read_stream, write_stream, mcp_server.create_initialization_options())

    anyio.run(run)
