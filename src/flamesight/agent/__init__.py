"""The chat agent: a LangGraph graph, its tools and its event stream.

The tools (`flamesight.agent.tools`) are defined once and offered to the
chat agent, the MCP server and the CLI::

    agent = ChatAgent(LoadedProfiles(group), settings, auth, snapshots=DirectorySnapshots(dir))
    turn = agent.run(history, "Why is this slow?")
    for event in turn:
        print(event.to_dict())
    history = turn.history
"""

from flamesight.agent.events import (
    ErrorEvent,
    Event,
    ModelChunkAppend,
    ModelChunkEnd,
    ModelChunkStart,
    ModelResponseEnd,
    ToolEnd,
    ToolError,
    ToolStart,
)
from flamesight.agent.graph import (
    DEFAULT_MAX_ITERATIONS,
    ChatAgent,
    ChatTurn,
    build_system_message,
    history_from_dicts,
    history_to_dicts,
)
from flamesight.agent.snapshots import DirectorySnapshots, MemorySnapshots, SnapshotSink
from flamesight.agent.tools import (
    TOOLS,
    LoadedProfiles,
    Tool,
    ToolFailure,
    ToolOutput,
    find_tool,
    tools_for,
)

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "TOOLS",
    "ChatAgent",
    "ChatTurn",
    "DirectorySnapshots",
    "ErrorEvent",
    "Event",
    "LoadedProfiles",
    "MemorySnapshots",
    "ModelChunkAppend",
    "ModelChunkEnd",
    "ModelChunkStart",
    "ModelResponseEnd",
    "SnapshotSink",
    "Tool",
    "ToolEnd",
    "ToolError",
    "ToolFailure",
    "ToolOutput",
    "ToolStart",
    "build_system_message",
    "find_tool",
    "history_from_dicts",
    "history_to_dicts",
    "tools_for",
]
