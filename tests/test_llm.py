"""flamesight.llm against real HTTP servers on loopback: settings, auth, requests, answers, failures.

The model endpoints and the OAuth token endpoint are the servers of
`llm_servers`, speaking the real wire formats; nothing of flamesight is
mocked. Profiles are built with `ProfileBuilder`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamesight.llm import (
    API_KEY_FLAG_WARNING,
    PRESETS,
    ApiKey,
    ClientCredentials,
    EndpointOptions,
    Failure,
    LLMError,
    NoAuth,
    Secret,
    Settings,
    analyze,
    build_request,
    load_settings,
    parse_oauth_block,
    render_report,
    resolve_auth,
    resolve_prompt,
    scrub,
)
from flamesight.model import ProfileBuilder, ProfileGroup, Unit
from tests import llm_servers as servers

API_KEY = "sk-test-Vq8Zr2Kp9LmN4xYw"
CLIENT_ID = "flamesight-ci"
CLIENT_SECRET = "cs-7fH2kLq9Zx0PwR4tYv"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


# fixtures


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDKs read OPENAI_*, ANTHROPIC_* and proxy variables themselves: none may leak in."""
    for name in list(os.environ):
        if name.upper().startswith(("OPENAI_", "ANTHROPIC_", "AZURE_OPENAI_", "FLAMESIGHT_")) or (
            name.lower() in ("http_proxy", "https_proxy", "all_proxy")
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def group() -> ProfileGroup:
    """A 100 ms profile: tokenize under parse for 0-40 ms, parse 40-60 ms, render 60-100 ms."""
    builder = ProfileBuilder("main thread", Unit.MILLISECONDS)
    main = builder.frame("main", "app.py", 1)
    parse = builder.frame("parse", "parser.py", 10)
    tokenize = builder.frame("tokenize", "lexer.py", 5)
    render = builder.frame("render", "view.py", 20)
    for time_ms in range(0, 40, 2):
        builder.add_sample(builder.stack_of([main, parse, tokenize]), 2.0, float(time_ms))
    for time_ms in range(40, 60, 2):
        builder.add_sample(builder.stack_of([main, parse]), 2.0, float(time_ms))
    for time_ms in range(60, 100, 2):
        builder.add_sample(builder.stack_of([main, render]), 2.0, float(time_ms))
    return ProfileGroup("app.cpuprofile", [builder.build()], 0, "Chrome .cpuprofile")


@pytest.fixture
def model_server() -> Iterator[servers.LoopbackServer]:
    """A chat-completions endpoint that streams a short answer by default."""
    with servers.LoopbackServer(
        servers.openai_stream(["tokenize ", "dominates: ", "80%."])
    ) as server:
        yield server


@pytest.fixture
def issuer() -> servers.TokenIssuer:
    return servers.TokenIssuer(CLIENT_ID, CLIENT_SECRET, expires_in=3600)


@pytest.fixture
def token_server(issuer: servers.TokenIssuer) -> Iterator[servers.LoopbackServer]:
    with servers.LoopbackServer(issuer) as server:
        yield server


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chat_settings(server: servers.LoopbackServer, **values: object) -> Settings:
    return Settings.for_endpoint(f"{server.url}/v1/chat/completions", **values)


def api_key() -> ApiKey:
    return ApiKey(Secret(API_KEY), "FLAMESIGHT_LLM_API_KEY")


def oauth(
    token_server: servers.LoopbackServer, clock: FakeClock | None = None, **kw: object
) -> ClientCredentials:
    return ClientCredentials(
        f"{token_server.url}/oauth2/token",
        CLIENT_ID,
        Secret(CLIENT_SECRET),
        clock=clock or time.monotonic,
        **kw,  # type: ignore[arg-type]
    )


def failure_of(call: object, *args: object, **kwargs: object) -> LLMError:
    with pytest.raises(LLMError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# settings


def test_defaults_follow_the_one_shot_format() -> None:
    settings = load_settings(EndpointOptions(), environ={})
    assert settings.provider == "openai"
    assert settings.url == "https://api.openai.com/v1/chat/completions"
    assert settings.base_url == "https://api.openai.com/v1"
    assert (settings.model, settings.max_tokens, settings.temperature) == ("gpt-4o", 2000, 0.3)
    assert settings.data_budget() == 6000


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://localhost:11434/v1/chat/completions", "http://localhost:11434/v1"),
        ("http://localhost:11434/v1/", "http://localhost:11434/v1"),
        ("https://gw.example.com/openai/v1/chat/completions/", "https://gw.example.com/openai/v1"),
    ],
)
def test_a_full_chat_completions_url_becomes_a_base_url(url: str, base: str) -> None:
    assert Settings.for_endpoint(url).base_url == base


def test_flags_win_over_the_environment_which_wins_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[llm]\nurl = "https://file.example.com/v1"\nmodel = "file-model"\nmax_tokens = 1500\n'
        'temperature = 0.1\n[llm.headers]\nX-Team = "perf"\n'
    )
    environ = {"FLAMESIGHT_CONFIG": str(config), "FLAMESIGHT_LLM_MODEL": "env-model"}
    from_file_and_env = load_settings(EndpointOptions(), environ=environ)
    assert from_file_and_env.base_url == "https://file.example.com/v1"
    assert from_file_and_env.model == "env-model"
    assert (from_file_and_env.max_tokens, from_file_and_env.temperature) == (1500, 0.1)
    assert from_file_and_env.headers == {"X-Team": "perf"}
    flagged = load_settings(
        EndpointOptions(model="flag-model", url="http://127.0.0.1:9/v1"), environ=environ
    )
    assert (flagged.model, flagged.base_url) == ("flag-model", "http://127.0.0.1:9/v1")
    env_url = load_settings(
        EndpointOptions(), environ={**environ, "FLAMESIGHT_LLM_URL": "https://env.example.com/v1"}
    )
    assert env_url.base_url == "https://env.example.com/v1"


def test_the_default_config_file_is_read_from_the_home_directory(tmp_path: Path) -> None:
    folder = tmp_path / ".config" / "flamesight"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('[llm]\nmodel = "home-model"\n')
    assert load_settings(environ={"HOME": str(tmp_path)}).model == "home-model"
    assert load_settings(environ={"HOME": str(tmp_path / "nobody")}).model == "gpt-4o"


def test_named_endpoints_and_templates_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[llm]\nendpoint = "local"\n'
        '[endpoints.local]\nurl = "http://localhost:11434/v1/chat/completions"\nmodel = "llama3.1"\n'
        "context_tokens = 8192\n"
        '[endpoints.corp]\nurl = "https://llm.example.com/v1"\n'
        'oauth_token_url = "https://login.example.com/token"\nclient_id = "fs"\n'
        'client_secret_env = "CORP_SECRET"\noauth_client_auth = "basic"\n'
        '[templates]\nstartup = "Why is {range} slow? Heaviest: {top_functions}."\n'
    )
    local = load_settings(environ={}, config_path=config)
    assert (local.base_url, local.model) == ("http://localhost:11434/v1", "llama3.1")
    assert local.data_budget() == 8192 - 2000 - 1000
    corp = load_settings(EndpointOptions(endpoint="corp"), environ={}, config_path=config)
    assert corp.auth.oauth_token_url == "https://login.example.com/token"
    assert corp.auth.oauth_client_auth == "client_secret_basic"
    assert corp.templates["startup"].startswith("Why is {range}")
    unknown = failure_of(
        load_settings, EndpointOptions(endpoint="nope"), environ={}, config_path=config
    )
    assert "no endpoint named 'nope'" in str(unknown) and "known: corp, local" in str(unknown)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[llm]\napi_key = "{secret}"\n', "llm.api_key"),
        ('[endpoints.corp]\nclient_secret = "{secret}"\n', "endpoints.corp.client_secret"),
        ('[llm]\npassword = "{secret}"\n', "llm.password"),
        ('[llm]\ntoken = "{secret}"\n', "llm.token"),
        ('[llm.headers]\nAuthorization = "Bearer {secret}"\n', "llm.headers.Authorization"),
        ('[llm.headers]\napi-key = "{secret}"\n', "llm.headers.api-key"),
        ('[server]\nsession_secret = "{secret}"\n', "server.session_secret"),
        ('[llm]\nmodel = "{secret}"\n', "llm.model"),
        ('[extra]\nvalues = ["a", "{secret}"]\n', "extra.values[1]"),
    ],
)
def test_a_secret_in_the_config_file_is_refused_with_where_secrets_go(
    tmp_path: Path, toml: str, key: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml.replace("{secret}", API_KEY))
    error = failure_of(load_settings, environ={}, config_path=config)
    assert error.failure is Failure.CONFIG
    assert f"'{key}' looks like a secret" in str(error)
    assert "environment variable" in str(error) and "--api-key-env" in str(error)
    assert "--oauth-file" in str(error) and "prompt" in str(error)
    assert API_KEY not in str(error)


def test_names_of_secrets_are_welcome_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[llm]\napi_key_env = "MY_KEY"\nclient_secret_env = "MY_SECRET"\n'
        'oauth_file = "~/oauth.txt"\noauth_token_url = "https://login.example.com/token"\n'
        'max_tokens = 1000\n[templates]\ntoken_budget = "Where do the tokens go in {range}?"\n'
    )
    settings = load_settings(environ={}, config_path=config)
    assert settings.auth.api_key_env == "MY_KEY"
    assert settings.auth.client_secret_env == "MY_SECRET"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[llm\n", "not valid TOML"),
        ('[llm]\nmodle = "x"\n', "unknown key 'llm.modle'"),
        ('[llm]\nmax_tokens = "many"\n', "'llm.max_tokens' must be an integer, not str"),
        ("[llm]\ntemperature = 5\n", "temperature must be between 0 and 2"),
        ('[templates]\nbad = "look at {ranges}"\n', "template 'bad' uses {ranges}"),
    ],
)
def test_config_file_mistakes_are_named(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    error = failure_of(load_settings, environ={}, config_path=config)
    assert message in str(error)
    assert error.failure is Failure.CONFIG


def test_a_config_file_that_was_named_must_exist(tmp_path: Path) -> None:
    error = failure_of(load_settings, environ={"FLAMESIGHT_CONFIG": str(tmp_path / "missing.toml")})
    assert "does not exist" in str(error)


def test_providers_are_told_apart_by_url_and_azure_urls_name_the_deployment() -> None:
    azure = Settings.for_endpoint(
        "https://res.openai.azure.com/openai/deployments/perf-4o/chat/completions?api-version=2024-06-01"
    )
    assert azure.provider == "azure"
    assert azure.base_url == "https://res.openai.azure.com/openai/deployments/perf-4o"
    assert (azure.model, azure.api_version, dict(azure.query)) == ("perf-4o", "2024-06-01", {})
    resource = Settings.for_endpoint("https://res.openai.azure.com", model="gpt-4o")
    assert resource.base_url == "https://res.openai.azure.com/openai/deployments/gpt-4o"
    assert resource.api_version == "2024-10-21"
    claude = Settings.for_endpoint("https://api.anthropic.com/v1/messages", model="claude-x")
    assert (claude.provider, claude.base_url) == ("anthropic", "https://api.anthropic.com")
    assert "needs a model name" in str(
        failure_of(Settings.for_endpoint, "https://api.anthropic.com")
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/v1", "must start with http:// or https://"),
        ("https://user:hunter2@example.com/v1", "holds a user name or password"),
    ],
)
def test_bad_model_urls_are_refused(url: str, message: str) -> None:
    error = failure_of(Settings.for_endpoint, url)
    assert message in str(error)
    assert "hunter2" not in str(error)


def test_the_data_budget_follows_the_model_context() -> None:
    assert Settings.for_endpoint("http://127.0.0.1/v1", context_tokens=32000).data_budget() == 29000
    assert Settings.for_endpoint("http://127.0.0.1/v1", payload_budget=900).data_budget() == 900
    small = Settings.for_endpoint("http://127.0.0.1/v1", context_tokens=2048)
    assert "leaves 0 tokens for profile data" in str(failure_of(small.data_budget))


# credentials


def test_api_keys_come_from_the_environment_in_order() -> None:
    settings = Settings.for_endpoint("https://api.example.com/v1")
    both = resolve_auth(
        settings, environ={"FLAMESIGHT_LLM_API_KEY": API_KEY, "OPENAI_API_KEY": "other-key"}
    )
    assert isinstance(both, ApiKey) and both.key.reveal() == API_KEY
    fallback = resolve_auth(settings, environ={"OPENAI_API_KEY": API_KEY})
    assert isinstance(fallback, ApiKey) and fallback.source == "OPENAI_API_KEY"
    named = resolve_auth(
        settings, EndpointOptions(api_key_env="MY_KEY"), environ={"MY_KEY": API_KEY}
    )
    assert isinstance(named, ApiKey) and named.source == "--api-key-env MY_KEY"
    missing = failure_of(resolve_auth, settings, EndpointOptions(api_key_env="MY_KEY"), environ={})
    assert "MY_KEY" in str(missing) and "not set" in str(missing)


def test_the_api_key_flag_works_but_warns() -> None:
    warnings: list[str] = []
    auth = resolve_auth(
        Settings.for_endpoint("https://api.example.com/v1"),
        EndpointOptions(api_key=API_KEY),
        environ={},
        warn=warnings.append,
    )
    assert isinstance(auth, ApiKey) and auth.key.reveal() == API_KEY
    assert warnings == [API_KEY_FLAG_WARNING]
    assert "shell history" in warnings[0] and API_KEY not in warnings[0]
    assert API_KEY not in repr(EndpointOptions(api_key=API_KEY))


def test_without_a_key_loopback_needs_none_others_ask_or_fail() -> None:
    local = resolve_auth(Settings.for_endpoint("http://localhost:11434/v1"), environ={})
    assert isinstance(local, NoAuth)
    remote = Settings.for_endpoint("https://api.example.com/v1")
    asked = resolve_auth(remote, environ={}, ask_secret=lambda prompt: API_KEY)
    assert isinstance(asked, ApiKey) and asked.source == "the prompt"
    error = failure_of(resolve_auth, remote, environ={})
    assert "no API key for https://api.example.com/v1" in str(error)
    assert "FLAMESIGHT_LLM_API_KEY" in str(error) and "--oauth-file" in str(error)


def test_two_ways_to_authenticate_at_once_are_refused(tmp_path: Path) -> None:
    error = failure_of(
        resolve_auth,
        Settings.for_endpoint("https://api.example.com/v1"),
        EndpointOptions(api_key_env="K", oauth_file=tmp_path / "oauth.txt"),
        environ={},
    )
    assert "choose one way to authenticate" in str(error)


def test_the_pasted_oauth_block_gives_client_credentials(tmp_path: Path) -> None:
    block = f"\n  https://login.example.com/oauth2/token  \n{CLIENT_ID}\n\n{CLIENT_SECRET}\n"
    credentials = parse_oauth_block(block)
    assert (credentials.token_url, credentials.client_id) == (
        "https://login.example.com/oauth2/token",
        CLIENT_ID,
    )
    assert CLIENT_SECRET not in repr(credentials)
    labelled = parse_oauth_block(
        f"TOKEN_URL=https://login.example.com/t\nCLIENT_ID={CLIENT_ID}\nCLIENT_SECRET: {CLIENT_SECRET}"
    )
    assert labelled.client_id == CLIENT_ID
    oauth_file = tmp_path / "oauth.txt"
    oauth_file.write_text(block)
    from_file = resolve_auth(
        Settings.for_endpoint("https://api.example.com/v1"),
        EndpointOptions(oauth_file=oauth_file),
        environ={},
    )
    assert isinstance(from_file, ClientCredentials) and from_file.client_id == CLIENT_ID
    from_env = resolve_auth(
        Settings.for_endpoint("https://api.example.com/v1"), environ={"FLAMESIGHT_LLM_OAUTH": block}
    )
    assert isinstance(from_env, ClientCredentials)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (f"https://login.example.com/t\n{CLIENT_ID}", "must be exactly three non-empty lines"),
        (f"https://login.example.com/t\n{CLIENT_ID}\n{CLIENT_SECRET}\nextra", "not 4"),
        (
            f"{CLIENT_SECRET}\n{CLIENT_ID}\nhttps://login.example.com/t",
            "line 1 of the OAuth block must be the token URL",
        ),
        (f"ftp://login.example.com/t\n{CLIENT_ID}\n{CLIENT_SECRET}", "starting with https://"),
    ],
)
def test_a_bad_oauth_block_is_refused_without_quoting_it(block: str, message: str) -> None:
    error = failure_of(parse_oauth_block, block)
    assert message in str(error)
    assert CLIENT_SECRET not in str(error) and CLIENT_ID not in str(error)


def test_oauth_from_separate_flags_needs_all_three(token_server: servers.LoopbackServer) -> None:
    settings = Settings.for_endpoint("https://api.example.com/v1")
    options = EndpointOptions(
        oauth_token_url=f"{token_server.url}/token",
        client_id=CLIENT_ID,
        client_secret_env="CI_SECRET",
    )
    auth = resolve_auth(settings, options, environ={"CI_SECRET": CLIENT_SECRET})
    assert isinstance(auth, ClientCredentials)
    partial = EndpointOptions(
        oauth_token_url=f"{token_server.url}/token", client_secret_env="CI_SECRET"
    )
    assert "lacks the client id" in str(failure_of(resolve_auth, settings, partial, environ={}))


def test_secrets_print_as_stars_and_refuse_pickling() -> None:
    secret = Secret(API_KEY)
    assert API_KEY not in f"{secret} {secret!r} {[secret]}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert scrub(f"key={API_KEY}!", [secret]) == "key=***!"


# prompts


def test_the_six_presets_are_the_design_prompts_word_for_word() -> None:
    design = SHARED / "DESIGN.md"
    if not design.is_file():
        pytest.skip(f"DESIGN.md not found at {design}")
    listed = re.findall(r"^(\d)\. (.+)$", design.read_text(), re.MULTILINE)
    assert [(p.number, p.text) for p in PRESETS] == [(int(n), text) for n, text in listed]


def test_prompts_are_chosen_by_number_name_text_or_template(group: ProfileGroup) -> None:
    assert resolve_prompt("3").text == "Analyze the call stack patterns and suggest optimizations"
    assert (
        resolve_prompt("memory").text == "Identify potential memory leaks or inefficient algorithms"
    )
    assert resolve_prompt().text == PRESETS[0].text
    assert resolve_prompt(text="Why is parse slow?").label == "custom prompt"
    error = failure_of(resolve_prompt, "7", templates={"startup": "x"})
    assert "1 or bottlenecks" in str(error) and "templates from the config file: startup" in str(
        error
    )
    assert "not both" in str(failure_of(resolve_prompt, "1", "text"))
    template = resolve_prompt(
        "startup", templates={"startup": "In {range}, explain {top_functions}. {{json}}"}
    )
    request = build_request(
        Settings.for_endpoint("http://127.0.0.1/v1"), group, 0.0, 40.0, template
    )
    assert request.prompt == (
        "In 0 s to 40.0 ms (40.0 ms) of main thread, explain "
        "tokenize (40.0 ms, 100.0% self). {json}"
    )
    assert request.prompt_label == "template startup"


# the request


def test_empty_ranges_and_ranges_without_samples_are_refused(group: ProfileGroup) -> None:
    settings = Settings.for_endpoint("http://127.0.0.1/v1")
    prompt = resolve_prompt()
    empty = failure_of(build_request, settings, group, 50.0, 50.0, prompt)
    assert empty.failure is Failure.RANGE
    assert str(empty) == "the range is empty: its end (50.0 ms) is not after its start (50.0 ms)"
    outside = failure_of(build_request, settings, group, 200.0, 300.0, prompt)
    assert str(outside) == (
        "no samples between 200 ms and 300 ms: the profile 'main thread' covers 0 s to 100 ms"
    )
    nothing = ProfileGroup("empty", [ProfileBuilder("idle", Unit.MILLISECONDS).build()])
    assert str(failure_of(build_request, settings, nothing, None, None, prompt)) == (
        "the profile 'idle' has no samples"
    )


def test_the_summary_payload_holds_only_the_range(group: ProfileGroup) -> None:
    request = build_request(
        Settings.for_endpoint("http://127.0.0.1/v1"), group, 0.0, 40.0, resolve_prompt()
    )
    assert "tokenize" in request.user and "render" not in request.user
    assert request.range_text == "0 s to 40.0 ms (40.0 ms)"
    assert "sampling profiler" in request.system and "milliseconds" in request.system
    assert "Chrome .cpuprofile" in request.system and "40.0%" in request.system
    assert "numbers" in request.system and "code-level suggestions" in request.system
    assert request.payload_tokens <= 6000


def _speedscope_export_available() -> bool:
    try:
        from flamesight.formats.speedscope import export  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _speedscope_export_available(), reason="the speedscope exporter is not built yet"
)
def test_the_speedscope_payload_is_sent_when_it_fits_and_refused_when_not(
    group: ProfileGroup,
) -> None:
    roomy = Settings.for_endpoint("http://127.0.0.1/v1")
    request = build_request(roomy, group, 0.0, 40.0, resolve_prompt(), "speedscope")
    data = json.loads(request.user.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    [profile] = data["profiles"]
    assert profile["type"] == "sampled" and sum(profile["weights"]) == pytest.approx(40.0)
    assert "tokenize" in request.user
    builder = ProfileBuilder("big", Unit.MILLISECONDS)
    stacks = [
        builder.stack_of([builder.frame(f"function_number_{i}", f"module_{i}.py", i)])
        for i in range(3000)
    ]
    for index, stack in enumerate(stacks):
        builder.add_sample(stack, 1.0, float(index))
    big = ProfileGroup("big.json", [builder.build()])
    tight = Settings.for_endpoint("http://127.0.0.1/v1", payload_budget=2000)
    error = failure_of(build_request, tight, big, None, None, resolve_prompt(), "speedscope")
    assert error.failure is Failure.PAYLOAD
    assert "more than the 2,000 tokens" in str(error) and "--payload summary" in str(error)


def test_an_unknown_payload_is_refused(group: ProfileGroup) -> None:
    error = failure_of(
        build_request,
        Settings.for_endpoint("http://127.0.0.1/v1"),
        group,
        None,
        None,
        resolve_prompt(),
        "csv",
    )
    assert str(error) == "unknown payload 'csv': choose summary or speedscope"


# talking to a chat-completions endpoint


def test_the_exact_request_and_the_streamed_answer(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    pieces: list[str] = []
    result = analyze(
        chat_settings(model_server),
        api_key(),
        group,
        0.0,
        40.0,
        resolve_prompt("hot-functions"),
        on_text=pieces.append,
        source="app.cpuprofile",
    )
    assert pieces == ["tokenize ", "dominates: ", "80%."]
    assert result.answer == "tokenize dominates: 80%."
    assert result.model == servers.CHAT_MODEL and result.requested_model == "gpt-4o"
    assert (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    ) == (1200, 48, 1248)
    assert result.streamed and result.finish_reason == "stop"

    [sent] = model_server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.json()
    assert set(body) == {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "stream",
        "stream_options",
    }
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-4o", 2000, 0.3)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"] == result.request.system
    assert system["content"].startswith("You are an expert in software performance analysis.")
    assert user["role"] == "user" and user["content"] == result.request.user
    assert user["content"].startswith("Find the most time-consuming functions\n\n")
    assert '"name":"tokenize","file":"lexer.py:5","self":"40.0 ms"' in user["content"]
    assert "render" not in user["content"]

    report = render_report(result)
    assert report.startswith("# flamesight analysis: app.cpuprofile\n")
    for row in (
        "| File | app.cpuprofile |",
        "| Range | 0 s to 40.0 ms (40.0 ms) |",
        f"| Model | {servers.CHAT_MODEL} (openai at {model_server.url}/v1/chat/completions, asked for gpt-4o) |",
        "| Prompt | Find the most time-consuming functions (preset 2: hot-functions) |",
        "| Tokens used | 1,200 prompt + 48 completion = 1,248 |",
    ):
        assert row in report
    assert re.search(r"\| Time taken \| \d+\.\d\d s \|", report)
    assert report.endswith("## Answer\n\ntokenize dominates: 80%.\n")


def test_extra_headers_and_query_parameters_are_sent(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    settings = Settings.for_endpoint(
        f"{model_server.url}/v1/chat/completions?tenant=perf", headers={"X-Team": "performance"}
    )
    analyze(settings, api_key(), group)
    [sent] = model_server.requests
    assert sent.headers["x-team"] == "performance"
    assert sent.query == {"tenant": "perf"}


def test_without_streaming_the_answer_comes_whole(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_json("All in tokenize."))
    pieces: list[str] = []
    result = analyze(
        chat_settings(model_server, stream=False), api_key(), group, on_text=pieces.append
    )
    assert (result.answer, pieces, result.streamed) == (
        "All in tokenize.",
        ["All in tokenize."],
        False,
    )
    body = model_server.requests[0].json()
    assert body["stream"] is False and "stream_options" not in body
    assert result.usage.total_tokens == 1248


def test_a_server_that_refuses_streaming_is_asked_again_without_it(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(
        servers.openai_error(400, "stream is not supported by this server"),
        servers.openai_json("Answer without streaming."),
    )
    result = analyze(chat_settings(model_server, max_retries=0), api_key(), group)
    assert result.answer == "Answer without streaming." and not result.streamed
    assert [r.json()["stream"] for r in model_server.requests] == [True, False]


def test_a_server_that_answers_a_stream_request_with_json_is_read(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_json("Plain JSON."))
    result = analyze(chat_settings(model_server), api_key(), group)
    assert result.answer == "Plain JSON." and len(model_server.requests) == 1


def test_a_server_that_wants_max_completion_tokens_gets_it(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(
        servers.openai_error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            code="unsupported_parameter",
        )
    )
    analyze(chat_settings(model_server, max_retries=0), api_key(), group)
    first, second = (r.json() for r in model_server.requests)
    assert first["max_tokens"] == 2000 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 2000 and "max_tokens" not in second


def test_429_is_retried_after_the_time_retry_after_asks(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(
        servers.openai_error(
            429, "Rate limit reached", kind="requests", headers={"Retry-After": "1"}
        )
    )
    result = analyze(chat_settings(model_server, max_retries=2), api_key(), group)
    assert result.answer == "tokenize dominates: 80%."
    first, second = model_server.requests
    assert second.received_at - first.received_at >= 0.95
    assert second.headers["x-stainless-retry-count"] == "1"


def test_5xx_is_retried_and_then_reported(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_error(503, "overloaded", kind="server_error"))
    assert analyze(chat_settings(model_server, max_retries=1), api_key(), group).answer
    assert len(model_server.requests) == 2
    model_server.script(*[servers.openai_error(502, "bad gateway", kind="server_error")] * 2)
    error = failure_of(analyze, chat_settings(model_server, max_retries=1), api_key(), group)
    assert error.failure is Failure.SERVER and error.status == 502
    assert str(error) == (
        f"{model_server.url}/v1/chat/completions failed with HTTP 502 (bad gateway) "
        "(after 2 attempts): the server has a problem; try again later"
    )
    assert len(model_server.requests) == 4


def test_persistent_rate_limiting_is_reported_with_the_wait_asked(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(
        servers.openai_error(429, "Rate limit reached", headers={"Retry-After": "300"})
    )
    error = failure_of(analyze, chat_settings(model_server, max_retries=2), api_key(), group)
    assert error.failure is Failure.RATE_LIMITED
    assert str(error) == (
        f"{model_server.url}/v1/chat/completions is rate limiting the requests (HTTP 429: Rate limit "
        "reached); it asks to wait 300 s: wait and try again, or check the quota of the key"
    )
    assert len(model_server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "failure", "expected"),
    [
        (
            servers.openai_error(
                401,
                "Incorrect API key provided",
                kind="invalid_request_error",
                code="invalid_api_key",
            ),
            Failure.UNAUTHORIZED,
            "{url} refused the credentials (HTTP 401: Incorrect API key provided); check the API key "
            "from FLAMESIGHT_LLM_API_KEY: it is wrong, expired or for another service",
        ),
        (
            servers.openai_error(403, "You are not allowed to sample from this model"),
            Failure.FORBIDDEN,
            "{url} denied access (HTTP 403: You are not allowed to sample from this model): the "
            "credentials were recognised but may not use model 'gpt-4o' here; check their permissions",
        ),
        (
            servers.openai_error(404, "The model `gpt-4o` does not exist", code="model_not_found"),
            Failure.NOT_FOUND,
            "{url} answered HTTP 404 (The model `gpt-4o` does not exist): check the URL (a base URL "
            "such as https://HOST/v1, or the full .../chat/completions URL) and that the model "
            "'gpt-4o' exists there",
        ),
        (
            servers.openai_error(400, "This model's maximum context length is 8192 tokens"),
            Failure.REJECTED,
            "{url} rejected the request with HTTP 400: This model's maximum context length is 8192 "
            "tokens; the request may be too long for the model: choose a shorter range or set "
            "context_tokens to the model's context size",
        ),
    ],
)
def test_http_errors_have_specific_messages(
    model_server: servers.LoopbackServer,
    group: ProfileGroup,
    reply: servers.Reply,
    failure: Failure,
    expected: str,
) -> None:
    model_server.script(reply)
    error = failure_of(analyze, chat_settings(model_server, max_retries=0), api_key(), group)
    assert error.failure is failure
    assert str(error) == expected.format(url=f"{model_server.url}/v1/chat/completions")


def test_a_slow_answer_times_out_after_the_retries(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(*[servers.slow(3.0, servers.openai_json("late"))] * 2)
    error = failure_of(
        analyze, chat_settings(model_server, timeout=0.3, max_retries=1), api_key(), group
    )
    assert error.failure is Failure.TIMEOUT
    assert str(error) == (
        f"no answer from {model_server.url}/v1/chat/completions within 0.3 s (after 2 attempts); "
        "raise the timeout or try again later"
    )
    assert len(model_server.requests) == 2


def test_a_stream_that_stalls_midway_times_out(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    def stall(exchange: servers.Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":"Half"},"finish_reason":null}]}\n\n'
        )
        exchange.wait(3.0)

    model_server.script(stall)
    pieces: list[str] = []
    error = failure_of(
        analyze,
        chat_settings(model_server, timeout=0.5, max_retries=0),
        api_key(),
        group,
        on_text=pieces.append,
    )
    assert pieces == ["Half"]
    assert error.failure is Failure.TIMEOUT
    assert (
        "stopped sending in the middle of the answer (nothing for 0.5 s, 4 characters received)"
        in str(error)
    )


def test_a_connection_dropped_mid_stream_is_reported(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_stream_dropped(["The hottest ", "function is"]))
    pieces: list[str] = []
    error = failure_of(
        analyze, chat_settings(model_server), api_key(), group, on_text=pieces.append
    )
    assert pieces == ["The hottest ", "function is"]
    assert error.failure is Failure.BAD_ANSWER
    assert str(error) == (
        f"the connection to {model_server.url}/v1/chat/completions was closed in the middle of the "
        "answer (23 characters received): the answer is incomplete; try again"
    )
    assert len(model_server.requests) == 1


def test_a_stream_that_ends_before_the_model_finished_is_truncated(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_stream_unfinished(["Only the ", "beginning"]))
    error = failure_of(analyze, chat_settings(model_server), api_key(), group)
    assert str(error) == (
        f"the answer from {model_server.url}/v1/chat/completions stopped before the model finished "
        "(it sent no finish_reason; 18 characters received): the answer is truncated; try again"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            servers.raw(
                200, "text/html; charset=utf-8", b"<html><body>Welcome to nginx!</body></html>"
            ),
            "{url} answered with text/html, not JSON ('<html><body>Welcome to nginx!</body></html>'...); "
            "is the URL a chat-completions endpoint?",
        ),
        (
            servers.raw(200, "application/json", b'{"id":"chatcmpl-1","choices":[{"index":0,"mess'),
            "the JSON answer from {url} is cut off or malformed (46 bytes received); try again",
        ),
        (
            servers.raw(200, "application/json", b'{"status":"ok"}'),
            "the answer from {url} has no choices[0].message.content; is it a chat-completions endpoint?",
        ),
    ],
)
def test_answers_that_are_not_chat_completions_are_named(
    model_server: servers.LoopbackServer, group: ProfileGroup, reply: servers.Reply, expected: str
) -> None:
    model_server.script(reply)
    error = failure_of(analyze, chat_settings(model_server, stream=False), api_key(), group)
    assert error.failure is Failure.BAD_ANSWER
    assert str(error) == expected.format(url=f"{model_server.url}/v1/chat/completions")


@pytest.mark.parametrize(
    ("provider", "event"),
    [
        ("openai", b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'),
        (
            "anthropic",
            b"event: error\n"
            b'data: {"type": "error", "error": {"type": "overloaded_error", "message": "model overloaded"}}\n\n',
        ),
    ],
)
def test_an_error_event_in_the_stream_is_reported(
    model_server: servers.LoopbackServer, group: ProfileGroup, provider: str, event: bytes
) -> None:
    def error_event(exchange: servers.Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(event)
        exchange.end_chunks()

    model_server.script(error_event)
    settings = Settings.for_endpoint(model_server.url, provider=provider, model="m", max_retries=0)
    error = failure_of(analyze, settings, api_key(), group)
    assert error.failure is Failure.SERVER
    assert str(error) == (
        f"{model_server.url} reported an error in the middle of the answer (0 characters received): "
        "model overloaded"
    )


def test_a_stream_chunk_that_is_not_json_is_named(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    def garbage(exchange: servers.Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(b"data: {not json at all\n\n")
        exchange.end_chunks()

    model_server.script(garbage)
    error = failure_of(analyze, chat_settings(model_server), api_key(), group)
    assert "sent a streamed chunk that is not valid JSON" in str(error)


def test_connection_failures_name_the_cause(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    port = closed_port()
    refused = failure_of(
        analyze,
        Settings.for_endpoint(f"http://127.0.0.1:{port}/v1", max_retries=0),
        api_key(),
        group,
    )
    assert refused.failure is Failure.CONNECT
    assert str(refused) == (
        f"cannot connect to http://127.0.0.1:{port}/v1: connection refused; is the server running "
        "on that host and port?"
    )
    dns = failure_of(
        analyze,
        Settings.for_endpoint("http://no-such-host.invalid/v1", max_retries=0),
        api_key(),
        group,
    )
    assert str(dns) == (
        "cannot connect to http://no-such-host.invalid/v1: the host name could not be resolved (DNS); "
        "check the URL"
    )
    tls = failure_of(
        analyze,
        Settings.for_endpoint(f"https://127.0.0.1:{model_server.port}/v1", max_retries=0),
        api_key(),
        group,
    )
    assert str(tls).startswith(
        f"cannot connect to https://127.0.0.1:{model_server.port}/v1: the TLS handshake failed"
    )
    assert "use http:// for a server without TLS" in str(tls)


def test_a_loopback_server_without_auth_gets_no_authorization_header(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    settings = chat_settings(model_server)
    auth = resolve_auth(settings, environ={})
    assert isinstance(auth, NoAuth)
    analyze(settings, auth, group)
    assert "authorization" not in model_server.requests[0].headers


def test_azure_gets_the_deployment_url_the_api_version_and_the_api_key_header(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    settings = Settings.for_endpoint(
        model_server.url, provider="azure", model="perf-4o", api_version="2024-10-21"
    )
    analyze(settings, api_key(), group)
    [sent] = model_server.requests
    assert sent.path == "/openai/deployments/perf-4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == API_KEY and "authorization" not in sent.headers


def test_azure_with_an_oauth_token_sends_it_as_bearer(
    model_server: servers.LoopbackServer, token_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    settings = Settings.for_endpoint(model_server.url, provider="azure", model="perf-4o")
    analyze(settings, oauth(token_server), group)
    [sent] = model_server.requests
    assert sent.headers["authorization"] == "Bearer issued-access-token-1"
    assert "api-key" not in sent.headers


# OAuth client credentials


def test_the_oauth_token_is_fetched_with_the_form_and_sent_as_bearer(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    group: ProfileGroup,
) -> None:
    model_server.default = servers.require(
        issuer.bearer_is_valid,
        servers.openai_stream(["ok"]),
        servers.openai_error(401, "bad token"),
    )
    result = analyze(chat_settings(model_server), oauth(token_server), group)
    assert result.answer == "ok"
    [token_request] = token_server.requests
    assert (token_request.method, token_request.path) == ("POST", "/oauth2/token")
    assert token_request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert token_request.form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert "authorization" not in token_request.headers
    assert model_server.requests[0].headers["authorization"] == "Bearer issued-access-token-1"


def test_the_token_is_reused_while_valid_and_fetched_again_after_it_expires(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    group: ProfileGroup,
) -> None:
    clock = FakeClock()
    credentials = oauth(token_server, clock)
    settings = chat_settings(model_server)
    for _ in range(3):
        analyze(settings, credentials, group)
        clock.now += 1000  # 3000 s of a 3600 s token: still within its life less 60 s
    assert len(token_server.requests) == 1
    clock.now += 541  # 3541 s after the fetch: past expires_in minus the margin
    analyze(settings, credentials, group)
    assert len(token_server.requests) == 2
    used = [r.headers["authorization"] for r in model_server.requests]
    assert used == ["Bearer issued-access-token-1"] * 3 + ["Bearer issued-access-token-2"]


def test_a_short_lived_token_keeps_a_tenth_of_its_life_as_margin(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    group: ProfileGroup,
) -> None:
    issuer.expires_in = 30
    clock = FakeClock()
    credentials = oauth(token_server, clock)
    analyze(chat_settings(model_server), credentials, group)
    clock.now += 26.9
    analyze(chat_settings(model_server), credentials, group)
    assert len(token_server.requests) == 1
    clock.now += 0.2
    analyze(chat_settings(model_server), credentials, group)
    assert len(token_server.requests) == 2


def test_basic_client_auth_is_used_when_the_form_is_refused_or_when_configured(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    group: ProfileGroup,
) -> None:
    issuer.methods = ("basic",)
    credentials = oauth(token_server)
    analyze(chat_settings(model_server), credentials, group)
    assert issuer.methods_seen == ["post", "basic"]
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_server.requests[1].headers["authorization"] == expected
    assert "client_secret" not in token_server.requests[1].form()
    assert credentials.client_auth == "client_secret_basic"
    configured = oauth(token_server, client_auth="client_secret_basic")
    analyze(chat_settings(model_server), configured, group)
    assert issuer.methods_seen == ["post", "basic", "basic"]


def test_a_wrong_client_secret_gets_the_servers_invalid_client(
    model_server: servers.LoopbackServer, token_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    wrong = ClientCredentials(
        f"{token_server.url}/oauth2/token", CLIENT_ID, Secret("not-the-secret")
    )
    error = failure_of(analyze, chat_settings(model_server), wrong, group)
    assert error.failure is Failure.TOKEN_ENDPOINT
    assert str(error) == (
        f"the token endpoint {token_server.url}/oauth2/token refused the request: invalid_client: "
        "client authentication failed (check the client id and client secret)"
    )
    assert len(token_server.requests) == 2  # the form, then HTTP Basic
    assert not model_server.requests


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            servers.raw(500, "text/html", b"<h1>Internal Server Error</h1>"),
            "the token endpoint {url} answered HTTP 500 (text/html, not a JSON error)",
        ),
        (
            servers.raw(
                503,
                "application/json",
                b'{"error":"temporarily_unavailable","error_description":"maintenance"}',
            ),
            "the token endpoint {url} answered HTTP 503: temporarily_unavailable: maintenance",
        ),
        (
            servers.raw(200, "application/json", b'{"token_type":"Bearer","expires_in":3600}'),
            "the token endpoint {url} answered without an access_token (fields in its answer: "
            "expires_in, token_type)",
        ),
        (
            servers.raw(400, "application/json", b'{"message":"malformed request"}'),
            "the token endpoint {url} answered HTTP 400",
        ),
        (
            servers.raw(200, "text/plain", b"hello"),
            "the token endpoint {url} answered HTTP 200 with something that is not a JSON object; "
            "is the token URL right?",
        ),
        (
            servers.raw(
                403,
                "application/json",
                b'{"error":"unauthorized_client","error_description":"no client credentials grant"}',
            ),
            "the token endpoint {url} refused the request: unauthorized_client: no client credentials "
            "grant (check the scope and that the client may use client credentials)",
        ),
    ],
)
def test_token_endpoint_failures_are_named(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    group: ProfileGroup,
    reply: servers.Reply,
    expected: str,
) -> None:
    token_server.script(reply)
    error = failure_of(analyze, chat_settings(model_server), oauth(token_server), group)
    assert error.failure is Failure.TOKEN_ENDPOINT
    assert str(error) == expected.format(url=f"{token_server.url}/oauth2/token")


def test_an_unreachable_token_endpoint_is_named(
    model_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    port = closed_port()
    credentials = ClientCredentials(
        f"http://127.0.0.1:{port}/token", CLIENT_ID, Secret(CLIENT_SECRET)
    )
    error = failure_of(analyze, chat_settings(model_server), credentials, group)
    assert str(error) == (
        f"cannot reach the token endpoint http://127.0.0.1:{port}/token: connection refused; is the "
        "server running on that host and port?"
    )


def test_a_refused_token_is_fetched_once_more_then_reported_as_a_scope_problem(
    model_server: servers.LoopbackServer, token_server: servers.LoopbackServer, group: ProfileGroup
) -> None:
    model_server.script(servers.openai_error(401, "token expired"))
    assert analyze(chat_settings(model_server), oauth(token_server), group).answer
    assert len(token_server.requests) == 2
    assert [r.headers["authorization"] for r in model_server.requests] == [
        "Bearer issued-access-token-1",
        "Bearer issued-access-token-2",
    ]
    model_server.script(*[servers.openai_error(401, "audience mismatch")] * 2)
    error = failure_of(analyze, chat_settings(model_server), oauth(token_server), group)
    assert error.failure is Failure.UNAUTHORIZED
    assert "was issued but is not accepted here: check the client's scope or audience" in str(error)
    model_server.script(servers.openai_error(403, "insufficient scope"))
    forbidden = failure_of(analyze, chat_settings(model_server), oauth(token_server), group)
    assert "check their permissions or the OAuth token's scope" in str(forbidden)


# Anthropic


def test_anthropic_messages_stream(group: ProfileGroup) -> None:
    with servers.LoopbackServer(
        servers.anthropic_stream(["Parsing ", "is the ", "bottleneck."])
    ) as server:
        settings = Settings.for_endpoint(
            f"{server.url}/v1/messages", model="claude-test", provider="anthropic"
        )
        pieces: list[str] = []
        result = analyze(settings, api_key(), group, 0.0, 60.0, on_text=pieces.append)
        assert pieces == ["Parsing ", "is the ", "bottleneck."]
        assert (result.answer, result.model) == (
            "Parsing is the bottleneck.",
            servers.ANTHROPIC_MODEL,
        )
        assert (
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
            result.finish_reason,
        ) == (900, 35, "stop")
        [sent] = server.requests
        assert sent.path == "/v1/messages"
        assert sent.headers["authorization"] == f"Bearer {API_KEY}"
        assert "anthropic-version" in sent.headers
        body = sent.json()
        assert set(body) == {"model", "system", "messages", "max_tokens", "stream"}
        assert (body["model"], body["max_tokens"], body["stream"]) == ("claude-test", 2000, True)
        assert body["system"] == result.request.system
        assert body["messages"] == [{"role": "user", "content": result.request.user}]
        assert (
            "parse" in body["messages"][0]["content"]
            and "render" not in body["messages"][0]["content"]
        )


def test_anthropic_json_answers_and_errors(group: ProfileGroup) -> None:
    with servers.LoopbackServer(servers.anthropic_json("Whole answer.")) as server:
        settings = Settings.for_endpoint(
            server.url, model="claude-test", provider="anthropic", max_retries=0
        )
        assert analyze(settings, api_key(), group).answer == "Whole answer."
        server.script(servers.anthropic_error(401, "authentication_error", "invalid x-api-key"))
        error = failure_of(analyze, settings, api_key(), group)
        assert error.failure is Failure.UNAUTHORIZED
        assert str(error).startswith(
            f"{server.url} refused the credentials (HTTP 401: invalid x-api-key)"
        )


def test_anthropic_with_an_oauth_token(
    token_server: servers.LoopbackServer, issuer: servers.TokenIssuer, group: ProfileGroup
) -> None:
    with servers.LoopbackServer(servers.anthropic_stream(["ok"])) as server:
        settings = Settings.for_endpoint(server.url, model="claude-test", provider="anthropic")
        analyze(settings, oauth(token_server), group)
        assert server.requests[0].headers["authorization"] == "Bearer issued-access-token-1"


# secrets stay secret


def test_no_secret_appears_in_logs_outputs_errors_or_files(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    group: ProfileGroup,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    issuer.methods = ("basic",)
    messages: list[str] = []
    settings = chat_settings(model_server, max_retries=1)
    credentials = oauth(token_server)

    def run(call: object, *args: object) -> None:
        try:
            result = call(*args)  # type: ignore[operator]
        except LLMError as error:
            messages.append(str(error))
        else:
            (tmp_path / f"report-{len(messages)}.md").write_text(render_report(result))
            print(render_report(result), result.to_dict())

    model_server.script(servers.openai_error(429, "slow down", headers={"Retry-After": "0.1"}))
    run(analyze, settings, credentials, group)
    run(analyze, settings, api_key(), group)
    model_server.script(
        servers.openai_error(401, f"bad key {API_KEY}"), servers.openai_error(401, "no")
    )
    run(analyze, chat_settings(model_server, max_retries=0), api_key(), group)
    model_server.script(*[servers.openai_error(401, "Bearer issued-access-token-2 rejected")] * 2)
    run(analyze, chat_settings(model_server, max_retries=0), credentials, group)
    token_server.script(
        servers.raw(
            400,
            "application/json",
            f'{{"error":"invalid_request","error_description":"secret {CLIENT_SECRET} unexpected"}}'.encode(),
        )
    )
    run(analyze, settings, oauth(token_server), group)
    run(
        analyze,
        settings,
        ClientCredentials(f"{token_server.url}/t", CLIENT_ID, Secret(f"{CLIENT_SECRET}-wrong")),
        group,
    )
    model_server.script(servers.openai_stream_dropped(["partial"]))
    run(analyze, settings, api_key(), group)
    model_server.script(servers.raw(200, "text/plain", f"echo {API_KEY}".encode()))
    run(analyze, settings, api_key(), group)
    print(repr(credentials), repr(api_key()), repr(settings))

    assert len(messages) == 6
    issued = issuer.issued
    assert issued, "the run must have fetched tokens"
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    secrets = [API_KEY, CLIENT_SECRET, basic, *issued]
    captured = capsys.readouterr()
    files = "".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    for text in (caplog.text, captured.out, captured.err, "\n".join(messages), files):
        for secret in secrets:
            assert secret not in text
    assert "***" in "\n".join(messages)
