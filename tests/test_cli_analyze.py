"""`flamesight analyze` against real HTTP servers on loopback, in-process and as a real program.

The model endpoint and the OAuth token endpoint are the servers of
`llm_servers`, speaking the real wire formats; the command runs through
click's CliRunner and as the installed `flamesight` program. Nothing of
flamesight is mocked.
"""

from __future__ import annotations

import base64
import io
import os
import pty
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from flamesight.cli import main
from flamesight.cli.analyze_command import MarkdownAnswer, split_finished_blocks
from flamesight.formats import load
from flamesight.formats.speedscope import export
from flamesight.llm import (
    PRESETS,
    NoAuth,
    Settings,
    build_request,
    resolve_prompt,
)
from flamesight.model import ProfileBuilder, ProfileGroup, Unit
from tests import llm_servers as servers

PROGRAM = Path(sys.executable).with_name("flamesight")
API_KEY = "sk-test-Vq8Zr2Kp9LmN4xYw"
CLIENT_ID = "flamesight-ci"
CLIENT_SECRET = "cs-7fH2kLq9Zx0PwR4tYv"
KEY_VARIABLE = "ANALYZE_TEST_KEY"
SECRET_VARIABLE = "ANALYZE_TEST_CLIENT_SECRET"
PIECES = ["## Findings\n\n", "tokenize ", "dominates: ", "**80%** of the range.\n"]
ANSWER = "".join(PIECES)


# fixtures and helpers


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OPENAI_*, FLAMESIGHT_* or proxy variable leaks in, and no user config file is read."""
    for name in list(os.environ):
        if name.upper().startswith(("OPENAI_", "ANTHROPIC_", "AZURE_OPENAI_", "FLAMESIGHT_")) or (
            name.lower() in ("http_proxy", "https_proxy", "all_proxy")
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def write_profile(path: Path, name: str = "main thread", shift: int = 0) -> Path:
    """A 100 ms speedscope profile: tokenize under parse 0-40 ms, parse 40-60 ms, render 60-100 ms.

    `shift` moves the time of the render samples into tokenize's, so two files differ.
    """
    builder = ProfileBuilder(name, Unit.MILLISECONDS)
    main_frame = builder.frame("main", "app.py", 1)
    parse = builder.frame("parse", "parser.py", 10)
    tokenize = builder.frame("tokenize", "lexer.py", 5)
    render = builder.frame("render", "view.py", 20)
    for time_ms in range(0, 40 + shift, 2):
        builder.add_sample(builder.stack_of([main_frame, parse, tokenize]), 2.0, float(time_ms))
    for time_ms in range(40 + shift, 60 + shift, 2):
        builder.add_sample(builder.stack_of([main_frame, parse]), 2.0, float(time_ms))
    for time_ms in range(60 + shift, 100, 2):
        builder.add_sample(builder.stack_of([main_frame, render]), 2.0, float(time_ms))
    path.write_bytes(export(ProfileGroup(path.stem, [builder.build()], 0, "speedscope")))
    return path


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    return write_profile(folder / "app.speedscope.json")


@pytest.fixture
def model_server() -> Iterator[servers.LoopbackServer]:
    """A chat-completions endpoint that streams a short Markdown answer."""
    with servers.LoopbackServer(servers.openai_stream(PIECES)) as server:
        yield server


@pytest.fixture
def issuer() -> servers.TokenIssuer:
    return servers.TokenIssuer(CLIENT_ID, CLIENT_SECRET, expires_in=3600)


@pytest.fixture
def token_server(issuer: servers.TokenIssuer) -> Iterator[servers.LoopbackServer]:
    with servers.LoopbackServer(issuer) as server:
        yield server


def chat_url(server: servers.LoopbackServer) -> str:
    return f"{server.url}/v1/chat/completions"


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """The command in-process; stdout and stderr apart; an uncaught exception fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def program_environment(**extra: str) -> dict[str, str]:
    """The current (cleaned) environment without COLUMNS, plus `extra`."""
    environment = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    environment.update(extra)
    return environment


def run_program(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `flamesight` program with pipes for stdout and stderr."""
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed (pip install -e . makes it)")
    return subprocess.run(
        [str(PROGRAM), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=program_environment(**env),
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def secrets(issuer: servers.TokenIssuer | None = None) -> list[str]:
    """Every credential string of these tests, and those a token endpoint issued."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return [API_KEY, CLIENT_SECRET, basic, *(issuer.issued if issuer else [])]


def assert_no_secrets(folder: Path, *texts: str, issuer: servers.TokenIssuer | None = None) -> None:
    """No credential in the given outputs nor in any file under `folder`."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    contents = [path.read_text(errors="replace") for path in files]
    for text in (*texts, *contents):
        for secret in secrets(issuer):
            assert secret not in text


def report_rows(report: str) -> dict[str, str]:
    """The header table of a report, as {name: value}."""
    rows = {}
    for line in report.splitlines():
        match = re.fullmatch(r"\| (.+?) \| (.+) \|", line)
        if match and match.group(1).strip():
            rows[match.group(1)] = match.group(2)
    return rows


def assert_clean_failure(stderr: str, code: int, expected_code: int, *needles: str) -> None:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr


# the request, the streamed answer and the report


def test_the_exact_request_the_streamed_answer_and_the_report(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    result = run(
        "analyze", profile, "--start", "0", "--end", "40ms", "--preset", "2",
        "--url", chat_url(model_server), "--api-key-env", KEY_VARIABLE,
        env={KEY_VARIABLE: API_KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ANSWER

    [sent] = model_server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = sent.json()
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-4o", 2000, 0.3)
    assert body["stream"] is True
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"].startswith("You are an expert in software performance analysis.")
    preset = PRESETS[1]
    assert preset.text == "Find the most time-consuming functions"
    assert user["content"].startswith(f"{preset.text}\n\n")
    # The range's summary: tokenize is all of 0-40 ms, render (60-100 ms) is outside it.
    assert '"name":"tokenize","file":"lexer.py:5","self":"40.0 ms"' in user["content"]
    assert "render" not in user["content"]
    expected = build_request(
        Settings.for_endpoint(chat_url(model_server)),
        load(profile),
        0.0,
        40.0,
        resolve_prompt("2"),
        source=str(profile),
    )
    assert (system["content"], user["content"]) == (expected.system, expected.user)

    report_path = Path(f"{profile}.analysis.md")
    report = report_path.read_text()
    assert report.startswith(f"# flamesight analysis: {profile}\n")
    rows = report_rows(report)
    assert rows["File"] == str(profile)
    assert rows["Profile"] == "main thread"
    assert rows["Range"] == "0 s to 40.0 ms (40.0 ms)"
    assert rows["Model"] == (
        f"{servers.CHAT_MODEL} (openai at {chat_url(model_server)}, asked for gpt-4o)"
    )
    assert rows["Prompt"] == f"{preset.text} (preset 2: hot-functions)"
    assert re.fullmatch(r"\d+\.\d\d s", rows["Time taken"])
    assert rows["Tokens used"] == "1,200 prompt + 48 completion = 1,248"
    assert report.endswith(f"## Answer\n\n{ANSWER}")
    assert f"Wrote {report_path}" in result.stderr
    assert_no_secrets(tmp_path, result.stdout, result.stderr)


def test_a_custom_prompt_a_named_preset_and_an_output_file(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    output = tmp_path / "reports" / "startup.md"
    result = run(
        "analyze", profile, "--prompt", "Why is parsing slow?", "--url", chat_url(model_server),
        "--model", "llama3.1", "--output", output, env={"FLAMESIGHT_LLM_API_KEY": API_KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = model_server.requests[-1].json()
    assert body["model"] == "llama3.1"
    assert body["messages"][1]["content"].startswith("Why is parsing slow?\n\n")
    rows = report_rows(output.read_text())
    assert rows["Prompt"] == "Why is parsing slow? (custom prompt)"
    assert rows["Range"] == "0 s to 100 ms (100 ms)"
    assert not Path(f"{profile}.analysis.md").exists()

    result = run(
        "analyze", profile, "--preset", "memory", "--url", chat_url(model_server), "--no-auth",
        "--output", tmp_path / "reports",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "authorization" not in model_server.requests[-1].headers
    assert (
        model_server.requests[-1]
        .json()["messages"][1]["content"]
        .startswith("Identify potential memory leaks or inefficient algorithms\n\n")
    )
    report = (tmp_path / "reports" / f"{profile.name}.analysis.md").read_text()
    assert report_rows(report)["Prompt"].endswith("(preset 4: memory)")

    result = run(
        "analyze", profile, "--payload", "speedscope", "--merge", "--url", chat_url(model_server),
        "--no-auth", "--output", tmp_path / "speedscope.md",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    user = model_server.requests[-1].json()["messages"][1]["content"]
    assert "Profile data (speedscope JSON) for 0 s to 100 ms (100 ms)" in user
    assert "https://www.speedscope.app/file-format-schema.json" in user
    assert report_rows((tmp_path / "speedscope.md").read_text())["Data sent"].startswith(
        "speedscope, about "
    )


def test_json_prints_one_object(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    output = tmp_path / "report.md"
    result = run(
        "analyze", profile, "--end", "40", "--url", chat_url(model_server), "--json",
        "--output", output, "--api-key-env", KEY_VARIABLE, env={KEY_VARIABLE: API_KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    document = orjson.loads(result.stdout)
    assert document["answer"] == ANSWER
    assert document["model"] == servers.CHAT_MODEL
    assert document["usage"] == {
        "prompt_tokens": 1200,
        "completion_tokens": 48,
        "total_tokens": 1248,
    }
    assert document["range"] == "0 s to 40.0 ms (40.0 ms)"
    assert (document["start"], document["end"], document["unit"]) == (0.0, 40.0, "milliseconds")
    assert document["report"] == str(output)
    assert document["file"] == str(profile)
    assert output.read_text().endswith(f"## Answer\n\n{ANSWER}")
    assert_no_secrets(tmp_path, result.stdout)


def test_the_real_program_with_settings_from_the_environment(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    output = tmp_path / "report.md"
    completed = run_program(
        "analyze", profile, "--start", "40ms", "--end", "60ms", "--preset", "bottlenecks",
        "--output", output,
        FLAMESIGHT_LLM_URL=f"{model_server.url}/v1",
        FLAMESIGHT_LLM_MODEL="perf-model",
        FLAMESIGHT_LLM_API_KEY=API_KEY,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ANSWER
    assert f"Wrote {output}" in completed.stderr
    [sent] = model_server.requests
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = sent.json()
    assert body["model"] == "perf-model"
    user = body["messages"][1]["content"]
    assert user.startswith("Identify performance bottlenecks in this profile data\n\n")
    assert '"name":"parse"' in user and "tokenize" not in user and "render" not in user
    rows = report_rows(output.read_text())
    assert rows["Range"] == "40.0 ms to 60.0 ms (20.0 ms)"
    assert rows["Model"].startswith(f"{servers.CHAT_MODEL} (openai at {model_server.url}/v1, ")
    assert rows["Tokens used"] == "1,200 prompt + 48 completion = 1,248"
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr)


def test_the_api_key_flag_works_but_warns_and_is_never_echoed(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    completed = run_program(
        "analyze", profile, "--url", chat_url(model_server), "--api-key", API_KEY,
        "--output", tmp_path / "report.md",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Warning: --api-key puts the key in your shell history" in completed.stderr
    assert model_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr)


# OAuth


def test_oauth_from_the_three_line_file(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    profile: Path,
    tmp_path: Path,
) -> None:
    block = tmp_path / "oauth.txt"
    block.write_text(f"{token_server.url}/oauth2/token\n{CLIENT_ID}\n{CLIENT_SECRET}\n")
    completed = run_program(
        "analyze", profile, "--url", chat_url(model_server), "--oauth-file", block,
        "--output", tmp_path / "report.md",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ANSWER
    [token_request] = token_server.requests
    assert (token_request.method, token_request.path) == ("POST", "/oauth2/token")
    assert token_request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert token_request.form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    [sent] = model_server.requests
    assert sent.headers["authorization"] == f"Bearer {issuer.issued[0]}"
    # The secret file itself holds the secret, by the user's choice; nothing else may.
    block.unlink()
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr, issuer=issuer)


def test_a_wrong_client_secret_stops_with_the_token_endpoints_message(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    profile: Path,
    tmp_path: Path,
) -> None:
    result = run(
        "analyze", profile, "--url", chat_url(model_server),
        "--oauth-token-url", f"{token_server.url}/oauth2/token", "--client-id", CLIENT_ID,
        "--client-secret-env", SECRET_VARIABLE,
        env={SECRET_VARIABLE: f"{CLIENT_SECRET}-wrong"},
    )  # fmt: skip
    assert_clean_failure(
        result.stderr,
        result.exit_code,
        1,
        f"Error: the token endpoint {token_server.url}/oauth2/token refused the request: "
        "invalid_client: client authentication failed (check the client id and client secret)",
    )
    assert model_server.requests == []
    assert not Path(f"{profile}.analysis.md").exists()
    assert f"{CLIENT_SECRET}-wrong" not in result.stderr + result.stdout
    assert_no_secrets(tmp_path, result.stdout, result.stderr)


# failures


def test_a_401_exits_with_the_specific_message(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    model_server.script(servers.openai_error(401, f"Incorrect API key provided: {API_KEY}"))
    completed = run_program(
        "analyze", profile, "--url", chat_url(model_server), "--api-key-env", KEY_VARIABLE,
        **{KEY_VARIABLE: API_KEY},
    )  # fmt: skip
    assert_clean_failure(
        completed.stderr,
        completed.returncode,
        1,
        f"Error: {chat_url(model_server)} refused the credentials (HTTP 401: "
        "Incorrect API key provided: ***); check the API key from --api-key-env "
        f"{KEY_VARIABLE}: it is wrong, expired or for another service",
    )
    assert completed.stdout == ""
    assert not Path(f"{profile}.analysis.md").exists()
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr)


def test_an_unreachable_url_exits_with_the_specific_message(profile: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    completed = run_program(
        "analyze", profile, "--url", url, "--max-retries", "0", FLAMESIGHT_LLM_API_KEY=API_KEY
    )
    assert_clean_failure(
        completed.stderr,
        completed.returncode,
        1,
        f"Error: cannot connect to {url}: connection refused; "
        "is the server running on that host and port?",
    )
    assert not Path(f"{profile}.analysis.md").exists()
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr)


def test_input_mistakes_exit_2_without_asking_the_model(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    common = ["--url", chat_url(model_server), "--no-auth"]
    cases = [
        (["--start", "200ms", "--end", "300ms"], "no samples between 200 ms and 300 ms"),
        (["--start", "200ms"], "the range is empty: its end (100 ms) is not after its start"),
        (["--start", "50ms", "--end", "20ms"], "'20ms' is not after --start '50ms'"),
        (["--start", "soon"], "Invalid value for '--start'"),
        (["--preset", "9"], "unknown preset '9': choose 1 or bottlenecks"),
        (["--preset", "1", "--prompt", "why?"], "use either --preset or --prompt, not both"),
        (["--profile", "7"], "no profile named or numbered '7'"),
        (["--budget", "10"], "payload_budget must be at least"),
    ]
    for flags, message in cases:
        result = run("analyze", profile, *common, *flags)
        assert_clean_failure(result.stderr, result.exit_code, 2, message)
    assert model_server.requests == []
    bad = tmp_path / "bad.json"
    bad.write_text("this is no profile")
    result = run("analyze", bad, *common)
    assert_clean_failure(result.stderr, result.exit_code, 2, f"Error: cannot read {bad}")


# several files


def test_batch_mode_writes_one_report_per_file_with_one_token(
    model_server: servers.LoopbackServer,
    token_server: servers.LoopbackServer,
    issuer: servers.TokenIssuer,
    profile: Path,
    tmp_path: Path,
) -> None:
    other = write_profile(tmp_path / "profiles" / "worker.speedscope.json", "worker", shift=20)
    reports = tmp_path / "reports"
    model_server.script(servers.openai_stream(["first answer\n"]))
    completed = run_program(
        "analyze", profile, other, "--end", "60ms", "--url", chat_url(model_server),
        "--oauth-token-url", f"{token_server.url}/oauth2/token", "--client-id", CLIENT_ID,
        "--client-secret-env", SECRET_VARIABLE, "--output", reports,
        **{SECRET_VARIABLE: CLIENT_SECRET},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (f"==> {profile} <==\nfirst answer\n==> {other} <==\n{ANSWER}")
    assert sorted(path.name for path in reports.iterdir()) == [
        "app.speedscope.json.analysis.md",
        "worker.speedscope.json.analysis.md",
    ]
    first = (reports / "app.speedscope.json.analysis.md").read_text()
    second = (reports / "worker.speedscope.json.analysis.md").read_text()
    assert report_rows(first)["File"] == str(profile)
    assert report_rows(second)["File"] == str(other)
    assert report_rows(second)["Profile"] == "worker"
    assert report_rows(second)["Range"] == "0 s to 60.0 ms (60.0 ms)"
    assert first.endswith("## Answer\n\nfirst answer\n")
    assert second.endswith(f"## Answer\n\n{ANSWER}")
    # One token for the whole batch, sent with both requests.
    assert len(token_server.requests) == 1 and len(issuer.issued) == 1
    assert [r.headers["authorization"] for r in model_server.requests] == [
        f"Bearer {issuer.issued[0]}"
    ] * 2
    # Each request carries its own file's data: the shifted file has tokenize for 60 ms.
    first_user = model_server.requests[0].json()["messages"][1]["content"]
    second_user = model_server.requests[1].json()["messages"][1]["content"]
    assert '"name":"tokenize","file":"lexer.py:5","self":"40.0 ms"' in first_user
    assert '"name":"tokenize","file":"lexer.py:5","self":"60.0 ms"' in second_user
    assert_no_secrets(tmp_path, completed.stdout, completed.stderr, issuer=issuer)


def test_batch_mode_without_output_writes_beside_each_file_and_json_lists_them(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    other = write_profile(tmp_path / "worker.speedscope.json", "worker")
    result = run(
        "analyze", profile, other, "--url", chat_url(model_server), "--json",
        env={"FLAMESIGHT_LLM_API_KEY": API_KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = orjson.loads(result.stdout)
    assert [entry["file"] for entry in document["analyses"]] == [str(profile), str(other)]
    assert [entry["report"] for entry in document["analyses"]] == [
        f"{profile}.analysis.md",
        f"{other}.analysis.md",
    ]
    for entry in document["analyses"]:
        assert entry["answer"] == ANSWER
        assert Path(entry["report"]).read_text().endswith(f"## Answer\n\n{ANSWER}")
    assert_no_secrets(tmp_path, result.stdout, result.stderr)


def test_a_file_that_fails_does_not_stop_the_batch_but_an_endpoint_failure_does(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    short = tmp_path / "short.folded"
    short.write_text("main;parse 3\n")  # plain sample counts: 3 samples, none in 50-60
    reports = tmp_path / "reports"
    result = run(
        "analyze", short, profile, "--start", "50", "--end", "60", "--url", chat_url(model_server),
        "--no-auth", "--output", reports,
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"Error: {short}: no samples between" in result.stderr
    assert [path.name for path in reports.iterdir()] == [f"{profile.name}.analysis.md"]
    assert len(model_server.requests) == 1

    model_server.script(servers.openai_error(404, "The model `nope` does not exist"))
    result = run(
        "analyze", profile, short, "--url", chat_url(model_server), "--model", "nope",
        "--no-auth", "--output", tmp_path / "more",
    )  # fmt: skip
    assert_clean_failure(
        result.stderr,
        result.exit_code,
        1,
        f"Error: {profile}: {chat_url(model_server)} answered HTTP 404",
        f"Skipped {short}: that failure stops the batch.",
    )
    assert len(model_server.requests) == 2
    assert not (tmp_path / "more").exists() or not list((tmp_path / "more").iterdir())


def test_report_names_that_clash_are_refused_before_anything_is_sent(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    twin = tmp_path / "app.speedscope.json"
    twin.write_bytes(profile.read_bytes())
    result = run(
        "analyze", profile, twin, "--url", chat_url(model_server), "--no-auth",
        "--output", tmp_path / "reports",
    )  # fmt: skip
    assert_clean_failure(result.stderr, result.exit_code, 2, "would both write")
    not_a_directory = tmp_path / "file.md"
    not_a_directory.write_text("")
    result = run(
        "analyze", profile, twin, "--url", chat_url(model_server), "--no-auth",
        "--output", not_a_directory,
    )  # fmt: skip
    assert_clean_failure(result.stderr, result.exit_code, 2, "--output names a directory")
    assert model_server.requests == []


# the terminal


def test_on_a_terminal_the_answer_is_rendered_markdown(
    model_server: servers.LoopbackServer, profile: Path, tmp_path: Path
) -> None:
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed")
    controller, terminal = pty.openpty()
    drawn = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        completed = subprocess.run(
            [str(PROGRAM), "analyze", str(profile), "--url", chat_url(model_server),
             "--output", str(tmp_path / "report.md")],
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            env=program_environment(FLAMESIGHT_LLM_API_KEY=API_KEY, COLUMNS="80"),
        )  # fmt: skip
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    assert completed.returncode == 0, completed.stderr
    screen = drawn.decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "\x1b[" in screen  # styled
    assert "Findings" in plain and "dominates:" in plain and "80%" in plain
    assert "**80%**" not in plain and "## Findings" not in plain  # rendered, not raw
    assert (tmp_path / "report.md").read_text().endswith(f"## Answer\n\n{ANSWER}")
    assert_no_secrets(tmp_path, screen, completed.stderr)


def test_markdown_streaming_prints_finished_blocks_once() -> None:
    assert split_finished_blocks("# Title\n\nSome text") == ("# Title\n\n", "Some text")
    assert split_finished_blocks("```\ncode\n\nmore\n") == ("", "```\ncode\n\nmore\n")
    assert split_finished_blocks("```\ncode\n\n```\n\nafter") == ("```\ncode\n\n```\n\n", "after")
    assert split_finished_blocks("\n\nlead") == ("", "\n\nlead")
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=60)
    with MarkdownAnswer(console, NoAuth()) as show:
        for piece in ["# Find", "ings\n\nFirst **bold** para", "graph.\n\n- one\n- two\n"]:
            show(piece)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert plain.count("Findings") == 1
    assert "First bold paragraph." in plain and "**" not in plain
    assert "one" in plain and "two" in plain
