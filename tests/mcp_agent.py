"""A runner that works as an agent CLI does: it starts the MCP server ``$KX_MCP`` describes and does its PART
through the tools alone (brief, the target file, ticks, the drop, finish).

    kx run --runner 'python -m tests.mcp_agent'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters


async def call(client: Client, tool: str, **arguments) -> dict:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise SystemExit(f"{tool}: {result.content[0].text}")
    return result.structured_content


async def work() -> None:
    server = json.loads(Path(os.environ["KX_MCP"]).read_text(encoding="utf-8"))["mcpServers"]["kx"]
    params = StdioServerParameters(command=server["command"], args=server["args"],
                                   env={**os.environ, **server["env"]})
    async with Client(params, mode="legacy") as client:
        part = os.environ["KX_PART"]
        brief = await call(client, "brief", part=part)  # the session's attempt: from its --attempt
        sections = [box["text"] for box in brief["boxes"] if box["text"].startswith("Section")]
        Path(brief["target_path"]).parent.mkdir(parents=True, exist_ok=True)
        Path(brief["target_path"]).write_text("".join(f"## {s}\n\ntext\n\n" for s in sections), encoding="utf-8")
        Path(brief["drop_path"]).write_text(f"# Drop for {part}\n", encoding="utf-8")
        await call(client, "drop", part=part, path=brief["drop_path"])
        await call(client, "tick", part=part, refs=[box["ref"] for box in brief["boxes"]])
        await call(client, "finish", part=part)


if __name__ == "__main__":
    anyio.run(work)
