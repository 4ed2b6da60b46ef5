"""The chat agent: a LangGraph graph that answers questions about a profile with tools.

``setup`` (the system message, built once from the profile's summary, and
the user's question) -> ``agent`` (the chat model with the tools bound,
streaming) -> ``tools`` (run what the model asked for) -> ``agent`` ...
until the model answers without tool calls. After `max_iterations` rounds
of tool calls the model is asked, with tools switched off, to conclude with
what it has. The graph is compiled once and shared by all agents (its nodes
call the agent named in the run's config); a server hands each agent the
system message it keeps per trace (`build_system_message`).

The graph runs on an event loop (`astream`): the model's answer is read
with `flamesight.llm.chat_stream` (the `openai` SDK's request, its stream
read a network read at a time, so a busy process sends several tokens as one
`model_chunk_append`), and tools, which are synchronous and CPU-bound, run
in worker threads. A `ChatTurn` runs on the caller's task, handing its
events to a callback (`deliver`: the server), or is iterated with `for` on a
loop of its own (the CLI). The model is on the endpoint of `flamesight.llm`
settings; the key is the API key, or an OAuth access token taken from the
`flamesight.llm` auth object before every model request (so it is refreshed
between turns). A refused request is asked again with the fallbacks of
one-shot turns (`RequestFallbacks`: a new OAuth token, no streaming,
``max_completion_tokens``), and a failure reads as it does there
(`describe_failure`: what happened, where, and what to do).

The conversation history is an input and an output: `ChatAgent.run` takes
the messages so far and a question, gives events while the turn runs, and
leaves the new history in `ChatTurn.history`: the question, each model
message with tool calls, each tool result and the answer. When the endpoint
fails the turn ends with an `ErrorEvent`, and the history keeps the question
and everything committed before the failure. A rendered image is sent to
the model once, in the request that follows the render (as an ``image_url``
data-URL part of a user message); the history keeps the tool's text result.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import operator
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any, TypedDict

import anyio.to_thread
import openai
import orjson
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_openai_messages,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

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
from flamesight.agent.snapshots import SnapshotSink
from flamesight.agent.tools import LoadedProfiles, Tool, ToolFailure, find_tool, tools_for
from flamesight.analysis import summary
from flamesight.llm import Auth, ClientCredentials, LLMError, Settings
from flamesight.llm.chat_stream import ChatAnswer, ToolCall, stream_chat
from flamesight.llm.endpoint import (
    RequestFallbacks,
    async_openai_client,
    describe_failure,
    omitted_auth_header,
    truncated_answer,
    turn_http_client,
)
from flamesight.llm.errors import Failure

log = logging.getLogger(__name__)

DEFAULT_MAX_ITERATIONS = 8
"""Rounds of tool calls a turn may make before the model is asked to conclude."""
SUMMARY_BUDGET_TOKENS = 1500
"""Tokens of the profile summary in the system message."""
CONCLUDE_MESSAGE = (
    "You have used all {limit} rounds of tool calls allowed for this question. Do not call "
    "any more tools: answer now with what you have found, and say what is still open."
)


class AgentState(TypedDict, total=False):
    """The graph's state: the conversation, what the next request carries, how far it got."""

    messages: Annotated[list[BaseMessage], operator.add]
    prompt: str
    iterations: int
    images: list[tuple[str, str]]
    failed: bool


class ChatTurn:
    """One turn in progress: run it (once) for its events; `history` holds the conversation.

    `deliver` runs the turn on the caller's task and hands each event to a
    callback as it happens (the server, which publishes them); plain `for`
    runs it on an event loop of its own (for callers without one, such as the
    CLI). `history` is the previous history plus the question from the start,
    and grows with every message the turn commits.
    """

    def __init__(
        self,
        history: list[BaseMessage],
        run: Callable[[ChatTurn, Callable[[Event], None]], Awaitable[None]],
    ) -> None:
        self.history = history
        self._run = run

    async def deliver(self, write: Callable[[Event], None]) -> None:
        """Run the turn on this task, calling `write` with each event as it happens."""
        await self._run(self, write)

    def __iter__(self) -> Iterator[Event]:
        loop = asyncio.new_event_loop()
        events: asyncio.Queue[Event | None] = asyncio.Queue()

        async def drive() -> None:
            # One task runs the whole turn (LangGraph keeps context variables across awaits).
            try:
                await self.deliver(events.put_nowait)
            finally:
                events.put_nowait(None)

        task = loop.create_task(drive())
        try:
            while (event := loop.run_until_complete(events.get())) is not None:
                yield event
            loop.run_until_complete(task)
        finally:
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


class ChatAgent:
    """A chat about `profiles` with the analysis tools, on the endpoint `settings` names.

    `snapshots` receives every rendered PNG (None: images only go to the
    model). `max_iterations` is the number of tool-call rounds per turn.
    `http_client` (a `turn_http_client` its owner keeps open across turns, so
    that their requests reuse its connections) carries the model requests;
    None: each turn makes its own and closes it at its end.
    """

    def __init__(
        self,
        profiles: LoadedProfiles,
        settings: Settings,
        auth: Auth,
        *,
        snapshots: SnapshotSink | None = None,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        source: str | None = None,
        system_message: str | None = None,
        http_client: Any = None,
    ) -> None:
        if settings.provider == "anthropic":
            raise LLMError(
                Failure.CONFIG,
                "the chat agent talks to OpenAI-compatible and Azure OpenAI endpoints; "
                "use one of those (--provider openai or azure) for flamesight chat",
            )
        if max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        self.profiles = profiles
        self.settings = settings
        self.auth = auth
        self.snapshots = snapshots
        self.max_iterations = max_iterations
        self.source = source or profiles.name or profiles.group.name
        self.tools = tools_for(profiles)
        self._system = system_message
        self._shared_http_client = http_client
        self._http_client: Any = http_client
        """The model's HTTP client: `http_client`, or one of the turn's own (checking
        `settings.url_check`), made at its first request and closed at its end."""
        self._asked = RequestFallbacks(stream=True)
        """What the agent's requests ask for, as the endpoint's refusals changed it (no
        streaming, ``max_completion_tokens``: from then on; a new OAuth token: once per
        answer)."""

    # the public surface

    def run(self, history: Sequence[BaseMessage], prompt: str) -> ChatTurn:
        """Start a turn: `prompt` after `history`. Iterate the result, or `deliver` it, for
        its events."""
        previous = list(history)
        return ChatTurn(
            [*previous, HumanMessage(prompt)],
            lambda turn, write: self._run_turn(previous, prompt, turn, write),
        )

    def system_message(self) -> str:
        """The system message: the agent's role, the profile's summary, the tools."""
        if self._system is None:
            self._system = build_system_message(self.profiles, self.source)
        return self._system

    # the graph (`_graph()`: nodes call the agent named in the run's config)

    async def _setup(self, state: AgentState, write: Callable[[Event], None]) -> dict[str, Any]:
        if self._system is None:  # a large profile's summary takes a while: not on the loop
            await anyio.to_thread.run_sync(self.system_message)
        return {"messages": [HumanMessage(state["prompt"])], "iterations": 0, "images": []}

    def _route(self, state: AgentState) -> str:
        if state.get("failed"):
            return "end"
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "end"

    async def _agent(self, state: AgentState, write: Callable[[Event], None]) -> dict[str, Any]:
        concluding = state.get("iterations", 0) >= self.max_iterations
        request: list[BaseMessage] = [SystemMessage(self.system_message()), *state["messages"]]
        images = state.get("images") or []
        if images:
            request.append(_image_message(images))
        if concluding:
            request.append(HumanMessage(CONCLUDE_MESSAGE.format(limit=self.max_iterations)))
        try:
            message = await self._stream_answer(request, concluding, write)
        except Exception as error:  # the endpoint failed: the turn ends, the history stays
            write(ErrorEvent(self._describe(error)))
            return {"failed": True, "images": []}
        update: dict[str, Any] = {"messages": [message], "images": []}
        if message.tool_calls:
            update["iterations"] = state.get("iterations", 0) + 1
        return update

    async def _stream_answer(
        self, request: list[BaseMessage], concluding: bool, write: Callable[[Event], None]
    ) -> AIMessage:
        where = self.settings.display_url
        self._asked.token_renewed = False  # a new token once per answer; the rest holds
        while True:
            answer = ChatAnswer()
            in_text = False
            try:
                if isinstance(self.auth, ClientCredentials):  # it may fetch a token
                    client = await anyio.to_thread.run_sync(self._client)
                else:
                    client = self._client()
                body = self._request_body(request, concluding)
                headers = omitted_auth_header(self.settings, self.auth)
                async for text in stream_chat(client, body, answer, where, headers):
                    if not in_text:
                        write(ModelChunkStart())
                        in_text = True
                    write(ModelChunkAppend(text))
                if in_text:
                    write(ModelChunkEnd())
            except openai.APIStatusError as error:
                if self._asked.apply(self.settings, self.auth, error):
                    continue
                raise
            except openai.APIError as error:  # connection, timeout, an error in the stream
                if not answer.events:
                    raise
                received = sum(len(part) for part in answer.text_parts)
                raise describe_failure(self.settings, self.auth, error, received) from error
            break
        if not answer.events:
            raise LLMError(Failure.BAD_ANSWER, f"{where} sent an empty answer")
        if not answer.finish_reason:
            raise truncated_answer(self.settings, answer.text_parts, "it sent no finish_reason")
        tool_calls = [] if concluding else [_tool_call(i, c) for i, c in answer.calls()]
        return AIMessage(content=answer.text, tool_calls=tool_calls)

    async def _tools(self, state: AgentState, write: Callable[[Event], None]) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        results: list[BaseMessage] = []
        images: list[tuple[str, str]] = []
        for call in last.tool_calls:
            name = call["name"]
            args = dict(call.get("args") or {})
            write(ToolStart(name, args))
            try:
                if "__invalid__" in args:
                    raise ToolFailure(
                        f"the arguments of {name} are not valid JSON: {args['__invalid__']!r}"
                    )
                tool = find_tool(name, self.tools)
                output = await anyio.to_thread.run_sync(tool.call, self.profiles, args)
            except ToolFailure as failure:
                message = str(failure)
                write(ToolError(name, message))
                results.append(ToolMessage(f"Error: {message}", tool_call_id=call["id"]))
                continue
            except Exception as error:  # a bug in a tool must not end the turn
                log.exception("tool %s failed", name)
                message = f"{name} failed unexpectedly ({type(error).__name__}: {error})"
                write(ToolError(name, message))
                results.append(ToolMessage(f"Error: {message}", tool_call_id=call["id"]))
                continue
            location = None
            if output.image is not None:
                if self.snapshots is not None:
                    save = self.snapshots.save
                    location = await anyio.to_thread.run_sync(
                        save, output.image, _snapshot_name(args)
                    )
                images.append((output.summary, _data_url(output.image)))
            write(ToolEnd(name, output.summary, location))
            results.append(ToolMessage(output.text, tool_call_id=call["id"]))
        return {"messages": results, "images": images}

    # the model

    def _client(self) -> openai.AsyncOpenAI:
        """The SDK client for the next request (with OAuth, in a worker thread: it may fetch
        a token)."""
        if self._http_client is None:
            self._http_client = turn_http_client(self.settings)
        return async_openai_client(self.settings, self.auth, self._http_client)

    def _request_body(self, request: list[BaseMessage], concluding: bool) -> dict[str, Any]:
        """The chat-completions request: the messages, the tools (switched off to conclude)."""
        settings = self.settings
        messages = convert_to_openai_messages(request)
        for message in messages:
            if message.get("tool_calls") and not message.get("content"):
                message["content"] = None  # what OpenAI sends back for a message of tool calls
        body: dict[str, Any] = {
            "model": settings.model,
            "messages": messages,
            "temperature": settings.temperature,
            self._asked.tokens_field: settings.max_tokens,
            "stream": self._asked.stream,
            "tools": _openai_tools(tuple(self.tools)),
        }
        if concluding:
            body["tool_choice"] = "none"
        return body

    def _describe(self, error: BaseException) -> str:
        """What failed, for the turn's `ErrorEvent` (as `flamesight analyze` says it)."""
        return describe_failure(self.settings, self.auth, error).message

    # running a turn

    async def _run_turn(
        self,
        history: list[BaseMessage],
        prompt: str,
        turn: ChatTurn,
        write: Callable[[Event], None],
    ) -> None:
        """Run the graph on this task; its nodes hand their events straight to `write`.

        (Cheaper per text piece than LangGraph's custom stream mode, or a queue.)
        """
        state: dict[str, Any] = {"messages": history, "prompt": prompt}
        config = {
            "recursion_limit": 2 * self.max_iterations + 10,
            "configurable": {_AGENT: self, _WRITE: write},
        }
        failed = False
        try:
            async for values in _graph().astream(state, config=config, stream_mode="values"):
                if values.get("messages"):
                    turn.history = list(values["messages"])
                failed = bool(values.get("failed"))
        except Exception as error:  # setup failed, or the graph itself broke
            log.exception("the chat turn failed")
            write(ErrorEvent(self._describe(error)))
            return
        finally:
            await self._close_http_client()
        if not failed:
            write(ModelResponseEnd())

    async def _close_http_client(self) -> None:
        """Close the turn's HTTP client (its connections), if it made one."""
        if self._http_client is not self._shared_http_client:
            await self._http_client.aclose()
            self._http_client = self._shared_http_client


# helpers


def build_system_message(profiles: LoadedProfiles, source: str | None = None) -> str:
    """The agent's system message for `profiles`: its role, the profile's budgeted summary.

    Servers keep it per trace and hand it to `ChatAgent(system_message=...)`.
    """
    source = source or profiles.name or profiles.group.name
    profile = profiles.group.active
    document = summary(profiles.group, budget_tokens=SUMMARY_BUDGET_TOKENS)
    unit = profile.unit.value
    threads = (
        f" The file holds {len(profiles.group.profiles)} profiles (threads or "
        f"processes); tools take a `profile` argument to pick one, the main one is "
        f"{profile.name!r}."
        if len(profiles.group.profiles) > 1
        else ""
    )
    other = (
        f" A second profile, {profiles.other_name or profiles.other.name!r}, is "
        f"loaded: compare_profiles compares it (after) with this one (before)."
        if profiles.other is not None
        else ""
    )
    return (
        "You are an expert in software performance analysis, chatting with a developer "
        "about a profile. Use the tools to look at the data (call trees, hot paths, time "
        "ranges, flame graph images) before you conclude, and back every finding with "
        "numbers: function names, self and total time, percentages. Give concrete, "
        "code-level suggestions, and say plainly when the data cannot support a "
        "conclusion.\n\n"
        f"File: {source} ({profiles.group.format or 'format unknown'}). "
        f"Times and weights are in {unit}; time ranges run from "
        f"{profile.start:g} to {profile.end:g} {unit} and may be given with a suffix "
        f"such as '1.5s' or '200ms'.{threads}{other}\n\n"
        f"Summary of the profile:\n\n{document.markdown}"
    )


_AGENT = "flamesight_agent"
"""The key of the running `ChatAgent` in the graph's config (`configurable`)."""
_WRITE = "flamesight_write"
"""The key of the function that hands a node's events to the running turn."""


@functools.cache
def _graph() -> Any:
    """The agent's graph, compiled once (~5 ms) and shared: each node calls the run's agent.

    Nodes and the router are coroutines: LangGraph runs a plain function in a worker
    thread, a thread hop per step that a burst of turns starting at once pays a hundred
    times over.
    """

    def step(name: str) -> Callable[[AgentState, RunnableConfig], Awaitable[Any]]:
        async def run(state: AgentState, config: RunnableConfig) -> Any:
            configurable = config["configurable"]
            return await getattr(configurable[_AGENT], name)(state, configurable[_WRITE])

        return run

    async def route(state: AgentState, config: RunnableConfig) -> str:
        return config["configurable"][_AGENT]._route(state)

    graph = StateGraph(AgentState)
    graph.add_node("setup", step("_setup"))
    graph.add_node("agent", step("_agent"))
    graph.add_node("tools", step("_tools"))
    graph.add_edge(START, "setup")
    graph.add_edge("setup", "agent")
    graph.add_conditional_edges("agent", route, {"tools": "tools", "end": END})
    graph.add_edge("tools", "agent")
    return graph.compile()


@functools.cache
def _openai_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """`tools` in the request's format, made once per set of tools and shared by every
    request (which only serializes them; each schema is a deep copy to make)."""
    return [tool.openai_schema() for tool in tools]


def history_to_dicts(history: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The history as JSON-ready data, for storing anywhere."""
    return messages_to_dict(list(history))


def history_from_dicts(data: Sequence[dict[str, Any]]) -> list[BaseMessage]:
    """A history stored by `history_to_dicts`."""
    return messages_from_dict(list(data))


def _tool_call(index: int, call: ToolCall) -> dict[str, Any]:
    """A langchain tool call; arguments that are not a JSON object go under ``__invalid__``
    (the tool then tells the model why)."""
    try:
        args = orjson.loads(call.arguments) if call.arguments.strip() else {}
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        args = {"__invalid__": call.arguments}
    return {
        "name": call.name or "unknown",
        "args": args,
        "id": call.id or f"call_{index}",
        "type": "tool_call",
    }


def _snapshot_name(args: dict[str, Any]) -> str:
    """ "flamegraph", "flamechart", or "sandwich-FUNCTION" for a rendered image's file name."""
    view = str(args.get("view") or "flamegraph")
    function = args.get("function")
    return f"{view}-{function}" if function else view


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_message(images: list[tuple[str, str]]) -> HumanMessage:
    parts: list[str | dict[str, Any]] = []
    for caption, url in images:
        parts.append({"type": "text", "text": f"Image from render_flamegraph: {caption}."})
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return HumanMessage(content=parts)
