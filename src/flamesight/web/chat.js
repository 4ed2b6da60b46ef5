// The chat about a trace over the WebSocket /ws/chat (see
// flamesight.server.chat_routes): a floating button opens a window with the
// messages, streamed answers rendered as Markdown, a chip per tool call
// (running, done, failed), the flame graphs the tools drew, and the input.
//
// Opening it sends start_analysis: the server binds the socket to the trace's
// latest session and answers with its history; the client then asks for the
// session's kept events (resume from 0) and rebuilds the conversation from
// them, chips and snapshots included. A dropped socket reconnects with
// resume {sessionId, afterSeq} and nothing is lost or shown twice. The
// endpoint's credentials stay in the settings inputs (and the server's
// memory for the session) and are cleared when the window closes.

import { EndpointFields } from "./endpoint.js";
import { renderMarkdown } from "./markdown.js";

const STICK_DISTANCE = 40;
const RECONNECT_MS = [300, 1000, 2000, 5000];

function $(selector) {
  return document.querySelector(selector);
}

function node(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

export class ChatWindow {
  constructor() {
    this.window = $("#chat-window");
    this.button = $("#chat-button");
    this.list = $("#chat-messages");
    this.input = $("#chat-input");
    this.status = $("#chat-status");
    this.latest = $("#chat-latest");
    this.traceId = null;
    this.socket = null;
    this.reset();
    this.endpointChanged = false;
    this.endpoint = new EndpointFields($("#chat-endpoint"), {
      onChange: () => {
        this.endpointChanged = true;
      },
      urlHint: "empty: the server's own model settings",
    });
    this.endpoint.url.placeholder = "the server's model";
    // The endpoint goes to the server with the first question (not at connect).
    this.endpointChanged = true;
    this.stick = true;
    this.button.addEventListener("click", () => (this.window.hidden ? this.open() : this.close()));
    $("#chat-close").addEventListener("click", () => this.close());
    $("#chat-new").addEventListener("click", () => this.newConversation());
    $("#chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.list.addEventListener("scroll", () => {
      const { scrollTop, scrollHeight, clientHeight } = this.list;
      this.stick = scrollHeight - scrollTop - clientHeight < STICK_DISTANCE;
      if (this.stick) this.latest.hidden = true;
    });
    this.latest.addEventListener("click", () => {
      this.stick = true;
      this.scrollDown(true);
    });
    window.__flamesightChat = this;
  }

  reset() {
    this.sessionId = null;
    this.lastSeq = 0;
    this.turns = 0;
    this.userPrompts = [];
    this.localPrompt = null;
    this.turn = null;
    this.busy = false;
    this.replaying = false;
    this.attempt = 0;
    this.waitingAck = null;
    this.list?.replaceChildren();
    this.window?.removeAttribute("data-session");
  }

  /** The viewer shows `traceId` (null: no trace open): the button shows, the chat follows. */
  setTrace(traceId) {
    this.button.hidden = traceId === null;
    if (traceId === this.traceId) return;
    this.disconnect();
    this.traceId = traceId;
    this.reset();
    if (traceId === null) this.close();
    else if (!this.window.hidden) this.connect();
  }

  open() {
    if (this.traceId === null) return;
    this.window.hidden = false;
    this.button.setAttribute("aria-pressed", "true");
    if (!this.socket) this.connect();
    this.input.focus();
    this.scrollDown(true);
  }

  close() {
    this.window.hidden = true;
    this.button.setAttribute("aria-pressed", "false");
    this.endpoint.clearCredentials();
  }

  /** Forget the session and socket (logout, another trace). */
  disconnect() {
    clearTimeout(this.retry);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.close();
    }
  }

  setStatus(text, kind = "") {
    this.status.textContent = text;
    this.window.dataset.connection = kind;
  }

  connect() {
    clearTimeout(this.retry);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/chat`);
    this.socket = socket;
    this.setStatus(this.sessionId ? "Reconnecting…" : "Connecting…", "connecting");
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      if (this.sessionId) {
        this.post({ type: "resume", sessionId: this.sessionId, afterSeq: this.lastSeq });
      } else {
        this.post({ type: "start_analysis", traceId: this.traceId });
      }
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.receive(message);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.endpointChanged = true; // a restarted server has forgotten the session's endpoint
      if (this.waitingAck) this.notSent("The connection dropped before the question was sent: send it again.");
      if (event.code === 1008) {
        this.setStatus(event.reason || "the server refused the chat", "failed");
        return;
      }
      const delay = RECONNECT_MS[Math.min(this.attempt, RECONNECT_MS.length - 1)];
      this.attempt++;
      this.setStatus("Disconnected: reconnecting…", "connecting");
      this.retry = setTimeout(() => {
        if (this.traceId !== null && !this.socket) this.connect();
      }, delay);
    };
  }

  post(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  endpointFields() {
    const chosen = this.endpoint.value();
    this.endpointChanged = false;
    // Without a URL the server's own settings are used, and nothing else is sent.
    return chosen.url ? chosen : {};
  }

  newConversation() {
    if (this.busy || !this.socket) return;
    this.reset();
    this.endpointChanged = true;
    this.post({ type: "start_analysis", traceId: this.traceId, newSession: true });
  }

  // --- what the server says ------------------------------------------------------

  receive(message) {
    if (message.type === "connection_ack") {
      this.acknowledged(message);
      return;
    }
    const isEvent = message.seq > this.lastSeq;
    if (message.type === "error" && !isEvent) {
      // An answer about a message this socket sent (not an event of the session).
      this.failTurn(message.message);
      return;
    }
    if (!isEvent) return;
    this.lastSeq = message.seq;
    this.window.dataset.seq = String(this.lastSeq);
    this.apply(message);
  }

  acknowledged(ack) {
    const waiting = this.waitingAck;
    this.waitingAck = null;
    if (ack.resumed) {
      this.replaying = false;
      this.setStatus("", "open");
      this.window.dataset.session = ack.sessionId;
      const asked = this.localPrompt;
      if (asked !== null) {
        // Sent just before the socket dropped: the replay shows it arrived, or it did not.
        setTimeout(() => {
          if (this.localPrompt === asked) this.notSent("The question did not reach the server: send it again.");
        }, 3000);
      }
      return;
    }
    if (waiting && ack.sessionId === this.sessionId) {
      // The endpoint was given to the same session: carry on where we are.
      this.lastSeq = Math.max(this.lastSeq, ack.seq);
      this.setStatus("", "open");
      waiting(true);
      return;
    }
    // A (new) session: rebuild it from its kept events, told which questions were asked.
    this.list.replaceChildren();
    this.sessionId = ack.sessionId;
    this.userPrompts = (ack.history || []).filter((m) => m.role === "user").map((m) => m.content);
    this.turns = 0;
    this.lastSeq = 0;
    this.turn = null;
    this.replaying = true;
    this.window.dataset.session = ack.sessionId;
    this.window.dataset.history = String((ack.history || []).length);
    if (ack.seq > 0) {
      this.post({ type: "resume", sessionId: ack.sessionId, afterSeq: 0 });
    } else {
      this.replaying = false;
      this.setStatus("", "open");
      if (!this.userPrompts.length) this.list.append(node("p", "hint chat-empty", "Ask anything about this trace."));
    }
    if (waiting) waiting(true);
  }

  apply(event) {
    switch (event.type) {
      case "waiting_for_model": {
        const prompt = this.localPrompt ?? this.userPrompts[this.turns] ?? "";
        this.localPrompt = null;
        this.turns++;
        this.list.querySelector(".chat-empty")?.remove();
        if (!this.pendingBubble) this.addMessage("user", prompt);
        this.pendingBubble = null;
        this.startTurn();
        break;
      }
      case "model_chunk_start":
        this.ensureTurn();
        this.turn.bubble = this.addAssistantBubble();
        this.turn.text = "";
        break;
      case "model_chunk_append":
        this.ensureTurn();
        if (!this.turn.bubble) {
          this.turn.bubble = this.addAssistantBubble();
          this.turn.text = "";
        }
        this.turn.text += event.text || "";
        this.paint(this.turn);
        break;
      case "model_chunk_end":
        if (this.turn?.bubble) {
          renderMarkdown(this.turn.bubble, this.turn.text);
          this.turn.bubble.classList.remove("streaming");
          this.turn.bubble = null;
          this.scrollDown();
        }
        break;
      case "tool_start":
        this.ensureTurn();
        this.toolChip(event);
        break;
      case "tool_end":
        this.ensureTurn();
        this.toolDone(event);
        break;
      case "tool_error":
        this.ensureTurn();
        this.toolFailed(event);
        break;
      case "error":
        this.endTurn(event.message);
        break;
      case "model_response_end":
        this.endTurn(null);
        break;
      default:
        break;
    }
  }

  // --- the conversation ------------------------------------------------------------

  addMessage(role, text) {
    const item = node("div", `chat-message ${role}`);
    const bubble = node("div", "bubble");
    if (role === "user") bubble.textContent = text;
    else renderMarkdown(bubble, text);
    item.append(bubble);
    this.list.append(item);
    this.scrollDown();
    return bubble;
  }

  startTurn() {
    const box = node("div", "chat-message assistant");
    const thinking = node("div", "thinking", "Thinking…");
    box.append(thinking);
    this.list.append(box);
    this.turn = { box, thinking, bubble: null, text: "", chips: [] };
    this.setBusy(true);
    this.scrollDown();
  }

  ensureTurn() {
    if (!this.turn) this.startTurn();
  }

  addAssistantBubble() {
    this.turn.thinking?.remove();
    this.turn.thinking = null;
    const bubble = node("div", "bubble markdown streaming");
    this.turn.box.append(bubble);
    this.scrollDown();
    return bubble;
  }

  paint(turn) {
    if (turn.painting) return;
    turn.painting = true;
    requestAnimationFrame(() => {
      turn.painting = false;
      if (turn.bubble) renderMarkdown(turn.bubble, turn.text);
      this.scrollDown();
    });
  }

  toolChip(event) {
    this.turn.thinking?.remove();
    this.turn.thinking = null;
    const chip = node("div", "tool-chip running");
    chip.dataset.tool = event.tool;
    chip.dataset.state = "running";
    const name = node("span", "tool-name", event.tool);
    const state = node("span", "tool-state", "running…");
    chip.append(name, state);
    if (event.args && Object.keys(event.args).length) chip.title = JSON.stringify(event.args);
    this.turn.box.append(chip);
    this.turn.chips.push(chip);
    this.scrollDown();
  }

  runningChip(tool) {
    const chip = this.turn.chips.find((c) => c.dataset.state === "running" && c.dataset.tool === tool);
    if (chip) return chip;
    this.toolChip({ tool });
    return this.turn.chips[this.turn.chips.length - 1];
  }

  toolDone(event) {
    const chip = this.runningChip(event.tool);
    chip.dataset.state = "done";
    chip.className = "tool-chip done";
    chip.querySelector(".tool-state").textContent = "done";
    if (event.summary) chip.title = event.summary;
    if (event.imageUrl && event.imageUrl.startsWith("/api/snapshots/")) {
      const figure = node("figure", "snapshot");
      const link = document.createElement("a");
      link.href = event.imageUrl;
      link.target = "_blank";
      link.rel = "noopener";
      const image = document.createElement("img");
      image.src = event.imageUrl;
      image.alt = event.summary || "flame graph";
      image.addEventListener("load", () => this.scrollDown());
      link.append(image);
      figure.append(link);
      if (event.summary) figure.append(node("figcaption", "hint", event.summary));
      chip.after(figure);
    }
    this.scrollDown();
  }

  toolFailed(event) {
    const chip = this.runningChip(event.tool);
    chip.dataset.state = "failed";
    chip.className = "tool-chip failed";
    chip.querySelector(".tool-state").textContent = "failed";
    chip.append(node("span", "tool-message", event.message || ""));
    this.scrollDown();
  }

  endTurn(errorMessage) {
    if (this.turn) {
      this.turn.thinking?.remove();
      if (this.turn.bubble) {
        renderMarkdown(this.turn.bubble, this.turn.text);
        this.turn.bubble.classList.remove("streaming");
      }
      if (errorMessage) this.turn.box.append(node("div", "chat-error error", errorMessage));
    } else if (errorMessage) {
      this.list.append(node("div", "chat-error error", errorMessage));
    }
    this.turn = null;
    this.setBusy(false);
    this.scrollDown();
  }

  /** The question in flight did not reach the server: say so and give it back to the input. */
  notSent(message) {
    const asked = this.localPrompt;
    this.pendingBubble?.parentElement?.remove();
    this.failTurn(message);
    if (asked && !this.input.value) this.input.value = asked;
  }

  failTurn(message) {
    // The server refused what this socket sent (e.g. a turn still running, a bad endpoint).
    if (this.waitingAck) {
      const waiting = this.waitingAck;
      this.waitingAck = null;
      this.endpointChanged = true;
      waiting(false);
    }
    this.localPrompt = null;
    if (this.pendingBubble) {
      this.pendingBubble = null;
      this.endTurn(message);
    } else {
      this.list.append(node("div", "chat-error error", message));
      this.scrollDown();
    }
    if (!this.turn) this.setBusy(false);
  }

  setBusy(busy) {
    this.busy = busy;
    this.window.dataset.busy = String(busy);
    $("#chat-send").disabled = busy;
  }

  scrollDown(force = false) {
    if (this.stick || force) {
      this.list.scrollTop = this.list.scrollHeight;
      this.latest.hidden = true;
    } else {
      this.latest.hidden = false;
    }
  }

  async send() {
    const prompt = this.input.value.trim();
    if (!prompt || this.busy) return;
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      this.list.append(node("div", "chat-error error", "Not connected to the server yet; try again in a moment."));
      this.scrollDown(true);
      return;
    }
    const problem = this.endpoint.url.value.trim() ? this.endpoint.problem() : "";
    if (problem) {
      this.list.append(node("div", "chat-error error", problem));
      this.scrollDown(true);
      return;
    }
    this.input.value = "";
    this.stick = true;
    this.setBusy(true);
    this.localPrompt = prompt;
    this.pendingBubble = this.addMessage("user", prompt);
    if (this.endpointChanged || !this.sessionId) {
      // Give the session the endpoint as it is now, then ask.
      const fields = this.endpointFields();
      if (fields.url) this.endpoint.remember();
      const accepted = await new Promise((resolve) => {
        this.waitingAck = resolve;
        const session = this.sessionId ? { sessionId: this.sessionId } : {};
        this.post({ type: "start_analysis", traceId: this.traceId, ...session, ...fields });
      });
      if (!accepted) return; // failTurn has said why
    }
    this.post({ type: "user_prompt", prompt });
  }
}
