"""The same analysis tools as the chat agent, offered over the Model Context Protocol."""

from flamesight.mcp.server import (
    MCP_TOOLS,
    McpTool,
    TraceCache,
    build_server,
    serve_http,
    serve_stdio,
)

__all__ = ["MCP_TOOLS", "McpTool", "TraceCache", "build_server", "serve_http", "serve_stdio"]
