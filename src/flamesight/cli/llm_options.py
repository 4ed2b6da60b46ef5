"""The model endpoint and credential flags, shared by every command that talks to a model.

`endpoint_options` adds ``--url --model --provider --endpoint --api-key-env
--api-key --oauth-file --oauth-token-url --client-id --client-secret-env
--oauth-scope --no-auth --max-tokens --temperature --timeout --max-retries
--config`` to a command; the command receives them as keyword arguments of
the same names. `endpoint_options_of` turns those into the `EndpointOptions`
of `flamesight.llm`, and `resolve_endpoint` into settings and credentials.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from flamesight.llm import Auth, EndpointOptions, Settings, load_settings, resolve_auth
from flamesight.llm.settings import PROVIDERS

F = TypeVar("F", bound=Callable[..., Any])

ENDPOINT_PARAMETERS = (
    "url",
    "model",
    "provider",
    "endpoint",
    "api_key_env",
    "api_key",
    "oauth_file",
    "oauth_token_url",
    "client_id",
    "client_secret_env",
    "oauth_scope",
    "no_auth",
    "max_tokens",
    "temperature",
    "timeout",
    "max_retries",
    "config_path",
)
"""The keyword arguments `endpoint_options` gives a command."""

_OPTIONS = (
    click.option(
        "--url",
        help="The model endpoint: a base URL (https://HOST/v1) or the full .../chat/completions "
        "URL [env FLAMESIGHT_LLM_URL; default OpenAI].",
    ),
    click.option("--model", help="The model name [env FLAMESIGHT_LLM_MODEL; default gpt-4o]."),
    click.option(
        "--provider",
        type=click.Choice(PROVIDERS),
        help="The API the endpoint speaks (default: guessed from the URL; openai covers "
        "Ollama, vLLM, llama.cpp, LM Studio and gateways).",
    ),
    click.option(
        "--endpoint",
        metavar="NAME",
        help="A named endpoint of the config file ([endpoints.NAME]).",
    ),
    click.option(
        "--api-key-env",
        metavar="VAR",
        help="Read the API key from this environment variable (default: FLAMESIGHT_LLM_API_KEY, "
        "then the provider's own, e.g. OPENAI_API_KEY).",
    ),
    click.option(
        "--api-key",
        metavar="VALUE",
        help="The API key itself. Works, but warns: it ends up in the shell history and the "
        "process list; prefer --api-key-env.",
    ),
    click.option(
        "--oauth-file",
        metavar="F",
        type=click.Path(dir_okay=False, path_type=Path),
        help="OAuth client credentials: a file of three lines, the token URL, the client id "
        "and the client secret.",
    ),
    click.option("--oauth-token-url", metavar="URL", help="OAuth token URL (with --client-id)."),
    click.option("--client-id", metavar="ID", help="OAuth client id."),
    click.option(
        "--client-secret-env",
        metavar="VAR",
        help="The environment variable holding the OAuth client secret.",
    ),
    click.option("--oauth-scope", metavar="SCOPE", help="The scope to ask the token endpoint for."),
    click.option(
        "--no-auth", is_flag=True, help="Send no credentials (a local server that needs none)."
    ),
    click.option(
        "--max-tokens", metavar="N", type=click.IntRange(min=1), help="Answer length cap."
    ),
    click.option(
        "--temperature", metavar="X", type=click.FloatRange(0, 2), help="Sampling temperature."
    ),
    click.option(
        "--timeout",
        metavar="SECONDS",
        type=click.FloatRange(min=0, min_open=True),
        help="Per request.",
    ),
    click.option(
        "--max-retries",
        metavar="N",
        type=click.IntRange(0, 10),
        help="Retries on 429, 5xx and timeouts (default 2).",
    ),
    click.option(
        "--config",
        "config_path",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The config file (default: $FLAMESIGHT_CONFIG or ~/.config/flamesight/config.toml).",
    ),
)


def endpoint_options(command: F) -> F:
    """Add the endpoint and credential flags to a click command (see the module docstring)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def endpoint_options_of(values: dict[str, Any], **extra: Any) -> EndpointOptions:
    """The `EndpointOptions` of the flags `endpoint_options` added (taken out of `values`).

    `extra` sets further fields (``payload_budget``, ``stream``).
    """
    flags = {name: values.pop(name, None) for name in ENDPOINT_PARAMETERS}
    flags["no_auth"] = bool(flags["no_auth"])
    return EndpointOptions(**flags, **extra)


def resolve_endpoint(options: EndpointOptions) -> tuple[Settings, Auth]:
    """Settings and credentials for `options`: a prompt for a secret on a terminal, warnings on
    stderr. Raises `LLMError` as `flamesight.llm` does."""
    settings = load_settings(options)
    auth = resolve_auth(
        settings,
        options,
        ask_secret=getpass.getpass if sys.stdin.isatty() else None,
        warn=lambda message: click.echo(f"Warning: {message}", err=True),
    )
    return settings, auth
