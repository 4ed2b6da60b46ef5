"""`flamesight mcp`: offer the analysis tools to MCP clients (stdio, or streamable HTTP)."""

from __future__ import annotations

import click

from flamesight.cli.commands import main


def parse_host_port(text: str) -> tuple[str, int]:
    """ "HOST:PORT" (or "[::1]:PORT", or ":PORT" for 127.0.0.1) as a host and a port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"expected HOST:PORT, e.g. 127.0.0.1:8765, not {text!r}", param_hint="'--http'"
        )
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@main.command("mcp")
@click.option(
    "--http",
    "address",
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.",
)
def mcp_command(address: str | None) -> None:
    """Serve flamesight's analysis tools over the Model Context Protocol.

    Every tool takes `trace`, the path of a profile file on this machine
    (loaded once and cached). By default the server speaks over stdin and
    stdout, as MCP clients start it; --http HOST:PORT serves streamable
    HTTP at /mcp instead. A client configuration:

        {"mcpServers": {"flamesight": {"command": "flamesight", "args": ["mcp"]}}}
    """
    from flamesight.mcp import serve_http, serve_stdio

    if address is None:
        serve_stdio()
        return
    host, port = parse_host_port(address)
    click.echo(f"flamesight MCP server at http://{host}:{port}/mcp", err=True)
    serve_http(host, port)


__all__ = ["mcp_command", "parse_host_port"]
