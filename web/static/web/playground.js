// The playground page: one prompt, several models, answers streamed side by side over /ws.
// Protocol: docs/protocol.md. Model output is untrusted: Markdown is rendered by marked and then
// sanitised by DOMPurify before it touches the DOM. Session tokens live in this module's memory
// only (never in localStorage, cookies set by us, or URLs).
import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";

const cfg = document.body.dataset;
const MAX_MODELS = Number(cfg.maxModels) || 6;
const RUNNING = new Set(["pending", "streaming"]);
const $ = (id) => document.getElementById(id);

const markdown = new Marked(
  { gfm: true, breaks: false, async: false },
  {
    renderer: {
      // An image is fetched the moment it is shown: from model output that is a tracking pixel
      // or a URL carrying the conversation out. A link instead, followed only if clicked.
      image({ href, title, text }) {
        const label = text || href;
        return this.link({ href, title, tokens: [{ type: "text", raw: label, text: label }] });
      },
    },
  },
);
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

// Nothing from model output may load anything (raw HTML passes through marked): no media
// elements, no SVG or MathML (whose <image>, <use> and filters take URLs), no URL attributes.
const SANITIZE = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    ...["img", "picture", "source", "video", "audio", "track", "object", "embed", "iframe"],
    ...["style", "link", "meta", "form", "input", "button", "textarea", "select"],
  ],
  FORBID_ATTR: ["style", "src", "srcset", "poster", "background", "ping", "action", "formaction"],
};

function renderMarkdown(text) {
  return DOMPurify.sanitize(markdown.parse(text), SANITIZE);
}

/**
 * An answer's Markdown in an element, rendered again only where it changed while it streams.
 * Rendering the whole answer on every chunk costs O(length) per frame (O(n²) per answer) and
 * replaces every node, which drops the reader's text selection. Streaming, the answer is cut into
 * marked's top-level blocks: the blocks before the first one whose source changed keep their
 * nodes, the rest are rendered (and sanitised) again. The final text is rendered whole: if that
 * is what the blocks already show (it is unless raw HTML spans blocks), the nodes stay.
 */
class MarkdownView {
  constructor(el) {
    this.el = el;
    this.text = null; // what the element shows
    this.blocks = null; // streaming: [{raw, html, nodes}] in order; null once rendered whole
    this.links = "";
  }

  show(text, final) {
    if (this.text === text && (this.blocks === null || !final)) return;
    if (!final) {
      this.update(text);
    } else {
      const html = renderMarkdown(text);
      if (this.blocks !== null && this.text !== text) this.update(text);
      if (this.blocks !== null && this.blocks.map((b) => b.html).join("") === html) {
        this.el.normalize(); // adjacent text nodes, as one parse of the whole would give
      } else {
        this.el.innerHTML = html;
      }
      this.blocks = null;
    }
    this.text = text;
  }

  update(text) {
    const tokens = markdown.lexer(text);
    // A reference definition ([x]: url) changes how earlier blocks render.
    const links = JSON.stringify(tokens.links);
    if (this.blocks === null || links !== this.links) {
      this.el.replaceChildren();
      this.blocks = [];
      this.links = links;
    }
    const blocks = this.blocks;
    let keep = 0;
    // The last block may still grow: it is always rendered again.
    while (keep < blocks.length && keep < tokens.length - 1 && blocks[keep].raw === tokens[keep].raw) keep += 1;
    for (const block of blocks.splice(keep)) for (const node of block.nodes) node.remove();
    const scratch = document.createElement("div");
    for (const token of tokens.slice(keep)) {
      const html = DOMPurify.sanitize(markdown.parser([token]), SANITIZE);
      scratch.innerHTML = html;
      const nodes = [...scratch.childNodes];
      this.el.append(...nodes);
      blocks.push({ raw: token.raw, html, nodes });
    }
  }
}

// --- Sign-in ------------------------------------------------------------------------------------
class Auth {
  constructor(onToken) {
    this.mode = cfg.auth;
    this.token = null;
    this.userId = null;
    this.onToken = onToken;
    this.timer = null;
  }

  async start() {
    if (this.mode === "dev") return this.refreshDev();
    if (this.mode === "clerk") return this.startClerk();
    throw new Error(
      "Sign-in is not configured on this server: set CLERK_PUBLISHABLE_KEY (or use DJANGO_DEBUG=1 without Clerk keys for the development sign-in).",
    );
  }

  schedule(seconds, refresh) {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      try {
        await refresh();
        this.onToken(this.token);
      } catch (err) {
        setStatus(`Could not refresh the sign-in: ${err.message}`);
        this.schedule(10, refresh);
      }
    }, seconds * 1000);
  }

  async refreshDev() {
    const response = await fetch(cfg.devTokenUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": cookie("csrftoken") || "" },
    });
    if (!response.ok) throw new Error(`development sign-in refused (HTTP ${response.status})`);
    const body = await response.json();
    this.token = body.token;
    this.userId = body.userId;
    this.schedule(refreshDelay(this.token), () => this.refreshDev());
  }

  async startClerk() {
    await new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = cfg.clerkScript;
      script.crossOrigin = "anonymous";
      script.async = true;
      script.setAttribute("data-clerk-publishable-key", cfg.clerkPublishableKey);
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error("Clerk could not be loaded")));
      document.head.appendChild(script);
    });
    const clerk = window.Clerk;
    await clerk.load();
    if (!clerk.user || !clerk.session) {
      setStatus("Redirecting to sign-in…");
      await clerk.redirectToSignIn({ signInForceRedirectUrl: window.location.href });
      return new Promise(() => {});
    }
    this.clerk = clerk;
    this.userId = clerk.user.id;
    const signOut = $("sign-out");
    signOut.hidden = false;
    signOut.addEventListener("click", () => clerk.signOut({ redirectUrl: window.location.pathname }));
    await this.refreshClerk();
  }

  async refreshClerk() {
    // Clerk session tokens live 60 s; clerk-js caches one and renews it before it expires.
    this.token = await this.clerk.session.getToken();
    if (!this.token) throw new Error("signed out");
    this.schedule(refreshDelay(this.token), () => this.refreshClerk());
  }

  async refresh() {
    if (this.mode === "dev") await this.refreshDev();
    else if (this.mode === "clerk") await this.refreshClerk();
    this.onToken(this.token);
  }
}

// Seconds until a token should be replaced: well before its exp claim (the server checks it).
function refreshDelay(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const left = JSON.parse(atob(part)).exp - Date.now() / 1000;
    return Math.max(5, Math.min(left - 20, left * 0.8));
  } catch {
    return 30;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

// --- The socket ---------------------------------------------------------------------------------
class Socket {
  constructor(auth, onEvent, onReady) {
    this.auth = auth;
    this.onEvent = onEvent;
    this.onReady = onReady;
    this.ws = null;
    this.ready = false;
    this.queue = [];
    this.backoff = 250;
  }

  connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${window.location.host}/ws`);
    this.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ event: "authenticate", data: { token: this.auth.token } }));
    });
    ws.addEventListener("message", (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.event === "authenticated" && !this.ready) {
        this.ready = true;
        this.backoff = 250;
        const queued = this.queue.splice(0);
        this.onReady();
        for (const text of queued) ws.send(text);
        return;
      }
      if (frame.event === "authenticated") return;
      this.onEvent(frame.event, frame.data || {});
    });
    ws.addEventListener("close", async (event) => {
      if (this.ws !== ws) return;
      this.ready = false;
      if (event.code === 4401) {
        try {
          await this.auth.refresh();
        } catch {
          /* retried below */
        }
      }
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    });
  }

  send(event, data) {
    const text = JSON.stringify({ event, data });
    if (this.ready && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.queue.push(text);
  }

  reauthenticate(token) {
    if (this.ready && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event: "authenticate", data: { token } }));
    }
  }
}

// --- REST ---------------------------------------------------------------------------------------
async function api(path, { retry = true, method = "GET" } = {}) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${auth.token}`, Accept: "application/json" },
    credentials: "omit",
  });
  if (response.status === 401 && retry) {
    await auth.refresh();
    return api(path, { retry: false, method });
  }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      message = body.message || body.detail || message;
    } catch {
      /* not JSON */
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// --- Formatting ---------------------------------------------------------------------------------
function ms(value) {
  if (value == null) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}
function cost(value) {
  if (value == null) return "–";
  if (value === 0) return "$0";
  return value < 0.01 ? `$${value.toPrecision(2)}` : `$${value.toFixed(4)}`;
}
function price(pricing) {
  if (!pricing) return "price unknown";
  if (!pricing.input && !pricing.output) return "free";
  return `$${pricing.input} in / $${pricing.output} out per M tokens`;
}
function setStatus(text, kind = "") {
  const el = $("auth-status");
  el.textContent = text;
  el.className = `auth-status ${kind}`;
}
function showError(text) {
  $("compose-error").textContent = text || "";
}

// Writes that change nothing still invalidate style and layout: a streaming column renders
// every frame.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

// --- Columns ------------------------------------------------------------------------------------
const columns = []; // in display order
const byKey = new Map(); // `${sessionId} ${slotKey}` -> Column
const pendingStarts = new Map(); // requestId -> {columns: Column[], rerun: boolean}
const view = { sessionId: null, detail: null, status: null };
let renderQueued = new Set();
// While answers stream, their columns render at most this often (all together), not on every
// chunk's frame: each render costs style, layout and paint of the page however little changed.
// Anything else (a status, the first chunk, an error, the end) renders on the next frame.
const STREAM_RENDER_MS = 100;
let flushScheduled = null; // null, "frame" or "timer"
let flushTimer = null;
let lastFlush = 0;

class Column {
  constructor(spec) {
    this.spec = spec; // {provider, model, temperature?, maxTokens?}
    this.sessionId = null;
    this.key = null;
    this.status = "pending";
    this.content = "";
    this.nextIndex = 0;
    this.metrics = null;
    this.error = null;
    this.sentAt = performance.now();
    this.firstAt = null;
    this.chunks = 0;
    this.isRerun = false;
    const node = $("column-template").content.firstElementChild.cloneNode(true);
    this.el = node;
    this.answer = node.querySelector(".answer");
    this.markdown = new MarkdownView(this.answer);
    this.metricEls = {};
    for (const el of node.querySelectorAll("[data-metric]")) this.metricEls[el.dataset.metric] = el;
    this.errorEl = node.querySelector(".column-error");
    this.title = node.querySelector(".column-title");
    this.buttons = {};
    for (const button of node.querySelectorAll("[data-action]")) {
      this.buttons[button.dataset.action] = button;
      button.addEventListener("click", () => this[button.dataset.action]());
    }
    this.render();
  }

  /** A blind battle's column before the reveal: it knows its key, not its model. */
  get hidden() {
    return !this.spec.provider;
  }

  bind(sessionId, key, modelName) {
    if (this.sessionId) byKey.delete(`${this.sessionId} ${this.key}`);
    this.sessionId = sessionId;
    this.key = key;
    if (modelName) this.spec = { ...this.spec, model: modelName };
    byKey.set(`${sessionId} ${key}`, this);
    this.el.dataset.session = sessionId;
    this.el.dataset.key = key;
    this.queueRender();
  }

  reset() {
    this.status = "pending";
    this.content = "";
    this.nextIndex = 0;
    this.metrics = null;
    this.error = null;
    this.sentAt = performance.now();
    this.firstAt = null;
    this.chunks = 0;
    this.render();
  }

  chunk(data) {
    if (data.index < this.nextIndex) return; // already in the snapshot
    if (data.index > this.nextIndex) {
      socket.send("watchSession", { sessionId: this.sessionId }); // a gap: resync
      return;
    }
    this.content += data.chunk;
    this.nextIndex = data.index + 1;
    this.chunks += 1;
    if (this.firstAt === null) this.firstAt = performance.now();
    const first = this.status === "pending";
    if (first) this.status = "streaming";
    this.queueRender(first);
  }

  snapshot(model) {
    this.content = model.content || "";
    this.nextIndex = model.nextIndex ?? 0;
    this.status = model.status;
    this.metrics = model.metrics || null;
    this.error = model.error || null;
    this.firstAt = null;
    this.chunks = 0;
    this.queueRender();
  }

  queueRender(now = true) {
    renderQueued.add(this);
    if (flushScheduled === "frame") return;
    if (now) {
      clearTimeout(flushTimer);
      flushScheduled = "frame";
      requestAnimationFrame(flushRenders);
    } else if (flushScheduled === null) {
      flushScheduled = "timer";
      const wait = Math.max(0, lastFlush + STREAM_RENDER_MS - performance.now());
      flushTimer = setTimeout(() => {
        flushScheduled = "frame";
        requestAnimationFrame(flushRenders);
      }, wait);
    }
  }

  render() {
    const running = RUNNING.has(this.status);
    const { provider, model } = this.spec;
    const name = this.hidden
      ? `Model ${this.key || "…"}`
      : `${this.spec.blind ? `${this.key}: ` : ""}${provider} · ${model || "default model"}`;
    setText(this.title, `${name}${this.isRerun ? " (re-run)" : ""}`);
    if (this.el.dataset.status !== this.status) this.el.dataset.status = this.status;
    setAttr(this.el, "aria-label", `${name}: ${this.status}`);
    setAttr(this.answer, "aria-busy", running ? "true" : "false");
    this.markdown.show(this.content, !running);
    this.errorEl.hidden = !this.error;
    setText(this.errorEl, this.error || "");
    this.buttons.stop.disabled = !running || !this.sessionId;
    this.buttons.rerun.disabled = running || this.hidden;
    this.buttons.copy.disabled = !this.content;
    const m = this.metrics;
    const metric = (name, text) => setText(this.metricEls[name], text);
    metric("status", this.status);
    if (m) {
      metric("ttft", ms(m.timeToFirstTokenInMilliseconds));
      metric("tps", m.tokensPerSecond == null ? "–" : m.tokensPerSecond.toFixed(1));
      metric("tokens", `${m.inputTokens ?? "?"} / ${m.outputTokens ?? "?"}`);
      metric("cost", cost(m.estimatedCost));
    } else if (this.firstAt !== null) {
      // Live estimates until the provider's own figures arrive with modelComplete.
      const seconds = (performance.now() - this.firstAt) / 1000;
      metric("ttft", `~${ms(this.firstAt - this.sentAt)}`);
      metric("tps", seconds > 0.2 ? `~${(this.chunks / seconds).toFixed(1)}` : "–");
      metric("tokens", `– / ~${this.chunks}`);
      metric("cost", "–");
    } else {
      for (const name of ["ttft", "tps", "tokens", "cost"]) metric(name, "–");
    }
  }

  stop() {
    if (this.sessionId && this.key) {
      socket.send("cancelModel", { sessionId: this.sessionId, model: this.key });
    }
  }

  async copy() {
    await navigator.clipboard.writeText(this.content);
    this.buttons.copy.textContent = "Copied";
    setTimeout(() => {
      this.buttons.copy.textContent = "Copy";
    }, 1500);
  }

  rerun() {
    if (this.sessionId) byKey.delete(`${this.sessionId} ${this.key}`);
    this.sessionId = null;
    this.key = null;
    this.isRerun = true;
    this.reset();
    const prompt = view.detail?.prompt ?? $("prompt").value;
    const system = view.detail?.system ?? ($("system").value || null);
    start({ prompt, system, models: [this.spec], targets: [this], rerun: true });
  }
}

function flushRenders() {
  flushScheduled = null;
  lastFlush = performance.now();
  const todo = renderQueued;
  renderQueued = new Set();
  for (const column of todo) column.render();
  updateSessionBar();
}

function layoutColumns() {
  const box = $("columns");
  box.replaceChildren(...columns.map((c) => c.el));
  box.dataset.count = String(columns.length);
  $("session").hidden = columns.length === 0;
}

function clearColumns() {
  columns.splice(0);
  byKey.clear();
  layoutColumns();
}

function updateSessionBar() {
  const running = columns.some((c) => RUNNING.has(c.status) && c.sessionId);
  $("stop-all").disabled = !running;
  const status = view.status || (running ? "streaming" : "");
  $("session-status").textContent = status;
  $("session-status").hidden = !status;
  const exportable = Boolean(view.sessionId);
  $("export-md").disabled = !exportable;
  $("export-json").disabled = !exportable;
  $("export-csv").disabled = !exportable;
  $("share").disabled = !exportable;
  if (arena.sessionId) arena.render();
  updateFollowUp(running);
}

// --- Starting, watching, opening ----------------------------------------------------------------
let requestCounter = 0;

function start({ prompt, system, models, targets, rerun, blind = false }) {
  requestCounter += 1;
  const requestId = `page-${Date.now().toString(36)}-${requestCounter}`;
  pendingStarts.set(requestId, { columns: targets, rerun });
  const data = { prompt, models, requestId };
  if (system) data.system = system;
  if (blind) data.blind = true;
  socket.send("startComparison", data);
}

function onSessionCreated(data) {
  const pending = pendingStarts.get(data.requestId);
  if (!pending) {
    historyList.refresh();
    return;
  }
  pendingStarts.delete(data.requestId);
  data.models.forEach((model, i) => {
    const column = pending.columns[i];
    if (column) column.bind(data.sessionId, model.key, model.modelName);
  });
  if (!pending.rerun) {
    view.sessionId = data.sessionId;
    view.status = "streaming";
    arena.open(data.sessionId, { blind: Boolean(data.blind), revealed: !data.blind });
    const url = `${window.location.pathname}?session=${encodeURIComponent(data.sessionId)}`;
    window.history.pushState({ session: data.sessionId }, "", url);
    loadDetail(data.sessionId);
  }
  historyList.refresh();
  updateSessionBar();
}

function onSnapshot(data) {
  if (data.sessionId === view.sessionId && !columns.some((c) => c.sessionId === data.sessionId)) {
    for (const model of data.models) {
      const column = new Column({ provider: model.provider, model: model.modelName });
      column.bind(data.sessionId, model.key, model.modelName);
      columns.push(column);
    }
    layoutColumns();
  }
  for (const model of data.models) {
    byKey.get(`${data.sessionId} ${model.key}`)?.snapshot(model);
  }
  if (data.sessionId === view.sessionId) view.status = data.status;
  updateSessionBar();
}

function openSession(sessionId) {
  clearColumns();
  showError("");
  arena.close();
  view.sessionId = sessionId;
  view.detail = null;
  view.status = null;
  $("session-prompt").textContent = "";
  socket.send("watchSession", { sessionId });
  loadDetail(sessionId);
  historyList.markCurrent();
}

async function loadDetail(sessionId) {
  try {
    const detail = await (await api(`/sessions/${encodeURIComponent(sessionId)}`)).json();
    if (view.sessionId !== sessionId) return;
    view.detail = detail;
    $("session-prompt").textContent = detail.prompt;
    if (arena.sessionId !== sessionId) arena.open(sessionId, detail);
    else arena.setTurns(sessionId, detail.turns?.length ?? 1);
    const specs = new Map(detail.models.map((m) => [m.key, m]));
    for (const column of columns) {
      const spec = column.sessionId === sessionId && specs.get(column.key);
      if (spec) {
        column.spec = {
          provider: spec.provider,
          model: spec.modelName,
          blind: detail.blind,
          ...(spec.temperature != null && { temperature: spec.temperature }),
          ...(spec.maxTokens != null && { maxTokens: spec.maxTokens }),
        };
      }
    }
  } catch (err) {
    if (view.sessionId === sessionId) showError(`Could not load this comparison: ${err.message}`);
  }
}

function rewatchRunning() {
  const sessions = new Set(
    columns.filter((c) => c.sessionId && RUNNING.has(c.status)).map((c) => c.sessionId),
  );
  if (view.sessionId && !columns.length) sessions.add(view.sessionId);
  for (const sessionId of sessions) socket.send("watchSession", { sessionId });
}

function onEvent(event, data) {
  const column = data.model ? byKey.get(`${data.sessionId} ${data.model}`) : null;
  switch (event) {
    case "sessionCreated":
      onSessionCreated(data);
      break;
    case "sessionSnapshot":
      if (data.turns) onSnapshot({ ...data, models: data.turns[0].models, status: data.status });
      onSnapshot(data);
      onSnapshotTurns(data);
      break;
    case "turnStarted":
      onTurnStarted(data);
      break;
    case "modelChunk":
      column?.chunk(data);
      break;
    case "modelStatus":
      if (column) {
        column.status = data.status;
        column.queueRender();
      }
      break;
    case "modelComplete":
      if (column) {
        column.metrics = data.metrics;
        column.queueRender();
      }
      break;
    case "modelError":
      if (column) {
        column.error = data.error;
        column.queueRender();
      }
      break;
    case "voteRecorded":
    case "voteRetracted":
    case "revealed":
    case "flagged":
    case "unflagged":
    case "tagsSet":
      arena.onEvent(event, data);
      break;
    case "comparisonComplete":
      if (data.sessionId === view.sessionId) view.status = data.status;
      updateSessionBar();
      historyList.refresh();
      break;
    case "error": {
      const pending = data.requestId && pendingStarts.get(data.requestId);
      if (pending) {
        pendingStarts.delete(data.requestId);
        for (const c of pending.columns) {
          c.status = "error";
          c.error = data.message;
          c.queueRender();
        }
        if (!pending.rerun) showError(data.message);
      } else if (arena.busy) {
        arena.fail(data.message);
      } else {
        showError(data.message);
      }
      break;
    }
    default:
      break;
  }
}

// --- Follow-up turns ----------------------------------------------------------------------------
// A comparison is a conversation: each column keeps its earlier turns (prompt + answer) above the
// current answer. Model output in them is rendered like the live answer (sanitised Markdown).

function turnBlock(prompt, content, error, turn) {
  const block = document.createElement("section");
  block.className = "turn";
  block.dataset.turn = String(turn);
  const asked = document.createElement("p");
  asked.className = "turn-prompt";
  asked.textContent = turn === 0 ? prompt : `Turn ${turn}: ${prompt}`;
  block.append(asked);
  if (content !== null) {
    const answer = document.createElement("div");
    answer.className = "turn-answer";
    answer.innerHTML = renderMarkdown(content || "");
    block.append(answer);
  }
  if (error) {
    const failed = document.createElement("p");
    failed.className = "turn-error";
    failed.textContent = error;
    block.append(failed);
  }
  return block;
}

function columnTurns(column) {
  return column.el.querySelector(".column-turns");
}

/** The first turn's prompt, as the page knows it. */
function firstPrompt() {
  return view.detail?.prompt ?? $("session-prompt").textContent;
}

function onTurnStarted(data) {
  if (data.sessionId !== view.sessionId) {
    historyList.refresh();
    return;
  }
  const asked = new Set(data.models.map((m) => m.key));
  const previous = data.turn - 1;
  for (const column of columns) {
    if (column.sessionId !== data.sessionId) continue;
    const box = columnTurns(column);
    if (previous === 0 && !box.childElementCount) {
      box.append(turnBlock(firstPrompt(), column.content, column.error, 0));
    } else {
      // The last block is the previous turn's prompt: its answer goes under it.
      const last = box.lastElementChild;
      if (last) last.replaceWith(turnBlock(last.dataset.prompt ?? "", column.content, column.error, previous));
    }
    const current = turnBlock(data.prompt, null, null, data.turn);
    current.dataset.prompt = data.prompt;
    box.append(current);
    column.reset();
    if (!asked.has(column.key)) {
      column.status = "not asked";
      column.queueRender();
    }
  }
  arena.setTurns(data.sessionId, data.turn + 1);
  view.status = "streaming";
  $("followup-prompt").value = "";
  updateSessionBar();
}

function onSnapshotTurns(data) {
  if (!data.turns) return;
  arena.setTurns(data.sessionId, data.turns.length);
  for (const column of columns) {
    if (column.sessionId !== data.sessionId) continue;
    const box = columnTurns(column);
    const blocks = [];
    for (const turn of data.turns.slice(0, -1)) {
      const model = turn.models.find((m) => m.key === column.key);
      blocks.push(turnBlock(turn.prompt, model ? model.content : "", model?.error, turn.turn));
    }
    const last = data.turns[data.turns.length - 1];
    const current = turnBlock(last.prompt, null, null, last.turn);
    current.dataset.prompt = last.prompt;
    blocks.push(current);
    box.replaceChildren(...blocks);
    if (!data.models.some((m) => m.key === column.key)) {
      column.snapshot({ status: "not asked", content: "", nextIndex: 0 });
    }
  }
}

function sendFollowUp(event) {
  event.preventDefault();
  const prompt = $("followup-prompt").value;
  if (!view.sessionId) return;
  if (!prompt.trim()) {
    showError("Write the follow-up first.");
    $("followup-prompt").focus();
    return;
  }
  showError("");
  socket.send("sendFollowUp", { sessionId: view.sessionId, prompt });
}

Column.prototype.continueFrom = function continueFrom() {
  const prompt = $("followup-prompt").value;
  if (!this.sessionId || !this.key) return;
  if (!prompt.trim()) {
    showError("Write the follow-up first, then continue from this answer.");
    $("followup-prompt").focus();
    return;
  }
  showError("");
  socket.send("continueFrom", { sessionId: this.sessionId, model: this.key, prompt });
};

function updateFollowUp(running) {
  const open = Boolean(view.sessionId) && !running && view.status !== "streaming";
  $("followup-send").disabled = !open;
  for (const column of columns) {
    const button = column.buttons.continueFrom;
    if (button) button.disabled = !open || !column.content || column.sessionId !== view.sessionId;
  }
}

// --- Compose ------------------------------------------------------------------------------------
let catalogue = [];

function modelSelect(value) {
  const select = document.createElement("select");
  select.setAttribute("aria-label", "Model");
  for (const provider of catalogue) {
    const group = document.createElement("optgroup");
    group.label = `${provider.label}${provider.configured ? "" : " (not configured)"}`;
    const models = provider.models.some((m) => m.name === provider.defaultModel)
      ? provider.models
      : [{ name: provider.defaultModel, label: provider.defaultModel, pricing: null }, ...provider.models];
    for (const model of models) {
      const option = document.createElement("option");
      option.value = JSON.stringify([provider.provider, model.name]);
      option.textContent = `${provider.label} · ${model.label} — ${price(model.pricing)}`;
      group.appendChild(option);
    }
    select.appendChild(group);
  }
  if (value) select.value = JSON.stringify(value);
  return select;
}

function numberInput(label, attrs) {
  const wrap = document.createElement("label");
  wrap.textContent = `${label} `;
  const input = document.createElement("input");
  input.type = "number";
  input.placeholder = "default";
  for (const [k, v] of Object.entries(attrs)) input.setAttribute(k, v);
  wrap.appendChild(input);
  return [wrap, input];
}

function addModelRow(value) {
  const rows = $("model-rows");
  if (rows.children.length >= MAX_MODELS) return;
  const row = document.createElement("li");
  row.className = "model-row";
  const select = modelSelect(value);
  const settings = document.createElement("span");
  settings.className = "settings per-model";
  const [tLabel, temperature] = numberInput("Temperature", { min: 0, max: 2, step: 0.1 });
  const [mLabel, maxTokens] = numberInput("Max tokens", { min: 1, max: 200000, step: 1 });
  temperature.dataset.field = "temperature";
  maxTokens.dataset.field = "maxTokens";
  settings.append(tLabel, mLabel);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Remove";
  remove.className = "quiet";
  remove.addEventListener("click", () => {
    row.remove();
    syncModelTools();
  });
  row.append(select, settings, remove);
  rows.appendChild(row);
  syncModelTools();
  return row;
}

function syncModelTools() {
  const rows = [...$("model-rows").children];
  $("add-model").disabled = rows.length >= MAX_MODELS;
  const same = $("same-settings").checked;
  $("shared-settings").hidden = !same;
  for (const row of rows) {
    row.querySelector(".per-model").hidden = same;
    row.querySelector("button").disabled = rows.length <= 1;
  }
}

function readNumber(input, { min, max, integer, name }) {
  const text = input.value.trim();
  if (!text) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}.`);
  }
  return value;
}

function readModels() {
  const same = $("same-settings").checked;
  return [...$("model-rows").children].map((row) => {
    const [provider, model] = JSON.parse(row.querySelector("select").value);
    const t = same ? $("shared-temperature") : row.querySelector('[data-field="temperature"]');
    const m = same ? $("shared-max-tokens") : row.querySelector('[data-field="maxTokens"]');
    const spec = { provider, model };
    const temperature = readNumber(t, { min: 0, max: 2, name: "Temperature" });
    const maxTokens = readNumber(m, { min: 1, max: 200000, integer: true, name: "Max tokens" });
    if (temperature !== undefined) spec.temperature = temperature;
    if (maxTokens !== undefined) spec.maxTokens = maxTokens;
    return spec;
  });
}

function submit(event) {
  event.preventDefault();
  showError("");
  const prompt = $("prompt").value;
  if (!prompt.trim()) {
    showError("Write a prompt first.");
    $("prompt").focus();
    return;
  }
  let models;
  try {
    models = readModels();
  } catch (err) {
    showError(err.message);
    return;
  }
  if (!models.length) {
    showError("Pick at least one model.");
    return;
  }
  const blind = $("blind").checked;
  if (blind && models.length < 2) {
    showError("A blind battle needs at least two models.");
    return;
  }
  const system = $("system").value.trim() || null;
  clearColumns();
  arena.close();
  // Blind: the server shuffles the models, so no column knows which one it shows.
  const targets = models.map((spec) => new Column(blind ? { provider: null, model: null, blind } : spec));
  columns.push(...targets);
  layoutColumns();
  view.sessionId = null;
  view.status = "streaming";
  view.detail = { prompt, system, models: [] };
  $("session-prompt").textContent = prompt;
  start({ prompt, system, models, targets, rerun: false, blind });
}

async function loadCatalogue() {
  const body = await (await api("/models")).json();
  catalogue = body.providers;
  const configured = catalogue.filter((p) => p.configured && p.provider !== "demo");
  const demo = catalogue.find((p) => p.provider === "demo");
  let defaults = configured.slice(0, 2).map((p) => [p.provider, p.defaultModel]);
  if (!defaults.length && demo) defaults = demo.models.slice(0, 2).map((m) => ["demo", m.name]);
  $("model-rows").replaceChildren();
  for (const value of defaults.length ? defaults : [null]) addModelRow(value);
}

// --- History ------------------------------------------------------------------------------------
class History {
  constructor() {
    this.next = null;
    this.items = [];
  }

  async refresh() {
    try {
      const response = await api("/sessions?limit=20");
      this.items = await response.json();
      this.next = nextLink(response);
      this.render();
    } catch (err) {
      showError(`Could not load the history: ${err.message}`);
    }
  }

  async more() {
    if (!this.next) return;
    const response = await api(this.next);
    const seen = new Set(this.items.map((i) => i.id));
    this.items.push(...(await response.json()).filter((i) => !seen.has(i.id)));
    this.next = nextLink(response);
    this.render();
  }

  render() {
    const list = $("history-list");
    list.replaceChildren(
      ...this.items.map((item) => {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.session = item.id;
        const prompt = document.createElement("span");
        prompt.className = "h-prompt";
        prompt.textContent = item.prompt;
        const meta = document.createElement("span");
        meta.className = "h-meta";
        const when = new Date(item.createdAt).toLocaleString();
        meta.textContent = `${when} · ${item.models.length} model${item.models.length === 1 ? "" : "s"} · ${item.status}`;
        button.append(prompt, meta);
        button.addEventListener("click", () => {
          window.history.pushState({ session: item.id }, "", `?session=${encodeURIComponent(item.id)}`);
          openSession(item.id);
        });
        li.appendChild(button);
        return li;
      }),
    );
    $("history-more").hidden = !this.next;
    this.markCurrent();
  }

  markCurrent() {
    for (const button of $("history-list").querySelectorAll("button")) {
      button.setAttribute("aria-current", button.dataset.session === view.sessionId ? "true" : "false");
    }
  }
}

function nextLink(response) {
  const link = response.headers.get("Link") || "";
  const match = link.match(/<([^>]+)>;\s*rel="next"/);
  if (!match) return null;
  const url = new URL(match[1], window.location.href);
  return url.pathname + url.search;
}

// --- Export -------------------------------------------------------------------------------------
function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function exportAs(format) {
  if (!view.sessionId) return;
  const id = view.sessionId;
  try {
    const response = await api(`/sessions/${encodeURIComponent(id)}/export?format=${format}`);
    const type = response.headers.get("Content-Type") || "application/octet-stream";
    download(`comparison-${id}.${format}`, type, await response.text());
  } catch (err) {
    showError(`Export failed: ${err.message}`);
  }
}

// --- Arena: votes, reveal, share ----------------------------------------------------------------
const OUTCOMES = [
  ["tie", "Tie"],
  ["bothBad", "Both bad"],
];

class Arena {
  constructor() {
    this.sessionId = null;
    this.blind = false;
    this.revealed = true;
    this.votes = new Map(); // turn -> the caller's winner ("A", …, "tie", "bothBad")
    this.turns = 1; // the first prompt and its follow-ups: each has a vote of its own
    this.busy = false;
    this.flags = new Set(); // keys of turn 0's answers flagged as naming their model
  }

  open(sessionId, { blind, revealed, turns }) {
    this.sessionId = sessionId;
    this.blind = Boolean(blind);
    this.revealed = Boolean(revealed) || !this.blind;
    this.votes = new Map();
    this.turns = turns?.length || 1;
    this.busy = false;
    this.flags = new Set();
    $("arena-status").textContent = "";
    $("arena-tags").value = "";
    $("share-link").hidden = true;
    this.render();
    this.load(sessionId);
  }

  /** The saved vote, flags and tags of a comparison (opened again, or from the history). */
  async load(sessionId) {
    try {
      const state = await (await api(`/sessions/${encodeURIComponent(sessionId)}/arena`)).json();
      if (this.sessionId !== sessionId) return;
      for (const vote of state.votes) if (!this.votes.has(vote.turn)) this.votes.set(vote.turn, vote.winner);
      this.turns = Math.max(this.turns, 1 + Math.max(0, ...state.votes.map((v) => v.turn)));
      for (const flag of state.flags) if (flag.turn === 0) this.flags.add(flag.key);
      if (!$("arena-tags").value) $("arena-tags").value = state.tags.join(", ");
      this.revealed = this.revealed || state.revealed;
      this.render();
    } catch (err) {
      if (this.sessionId === sessionId) $("arena-status").textContent = `Could not load the votes: ${err.message}`;
    }
  }

  /** A flag button on each column of a blind battle: "this answer names its model". */
  renderFlags() {
    for (const column of columns) {
      if (column.sessionId !== this.sessionId || !column.key) continue;
      let button = column.el.querySelector("button.flag");
      if (!button) {
        button = document.createElement("button");
        button.type = "button";
        button.className = "flag";
        button.title = "This answer names its own model: your vote on this battle will not count";
        const key = column.key;
        button.addEventListener("click", () => this.send(this.flags.has(key) ? "unflag" : "flag", { key }));
        column.el.querySelector(".column-actions").appendChild(button);
      }
      const flagged = this.flags.has(column.key);
      button.hidden = !this.blind || (this.revealed && !flagged);
      button.disabled = this.revealed; // flags are settled at the reveal
      button.textContent = flagged ? "Flagged: names its model" : "Names its model";
      button.setAttribute("aria-pressed", flagged ? "true" : "false");
      column.el.dataset.flagged = flagged ? "true" : "false";
    }
    $("arena-void").hidden = !(this.blind && this.flags.size);
  }

  saveTags() {
    const tags = $("arena-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    this.send("setTags", { tags });
  }

  close() {
    this.sessionId = null;
    $("arena").hidden = true;
  }

  keys() {
    return columns.filter((c) => c.sessionId === this.sessionId && c.key).map((c) => c.key);
  }

  /** A follow-up turn started (or a snapshot says how many there are): it can be voted on. */
  setTurns(sessionId, turns) {
    if (sessionId !== this.sessionId || turns <= this.turns) return;
    this.turns = turns;
    this.render();
  }

  /** The vote buttons of one turn (A, B, …, tie, both bad) in ``buttons``, for ``keys``. */
  renderVoteButtons(buttons, keys, turn) {
    const wanted = [...keys.map((k) => [k, k]), ...OUTCOMES];
    if (buttons.dataset.keys !== wanted.map(([k]) => k).join(" ")) {
      buttons.dataset.keys = wanted.map(([k]) => k).join(" ");
      buttons.replaceChildren(
        ...wanted.map(([winner, label]) => {
          const button = document.createElement("button");
          button.type = "button";
          button.dataset.winner = winner;
          button.textContent = label;
          button.addEventListener("click", () => this.send("vote", turn ? { winner, turn } : { winner }));
          return button;
        }),
      );
    }
    const vote = this.votes.get(turn) ?? null;
    for (const button of buttons.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", button.dataset.winner === vote ? "true" : "false");
    }
  }

  /** One row per follow-up turn: "Turn n", its vote buttons, its undo (the first turn's are above). */
  renderTurnVotes(keys) {
    const box = $("turn-votes");
    while (box.children.length > this.turns - 1) box.lastElementChild.remove();
    for (let turn = box.children.length + 1; turn < this.turns; turn += 1) {
      const row = document.createElement("div");
      row.className = "turn-vote";
      row.dataset.turn = String(turn);
      row.setAttribute("role", "group");
      row.setAttribute("aria-label", `Vote on turn ${turn}`);
      const label = document.createElement("span");
      label.className = "arena-label";
      label.textContent = `Turn ${turn}:`;
      const buttons = document.createElement("span");
      buttons.className = "vote-buttons";
      const undo = document.createElement("button");
      undo.type = "button";
      undo.className = "quiet unvote";
      undo.textContent = "Undo vote";
      undo.addEventListener("click", () => this.send("unvote", { turn }));
      row.append(label, buttons, undo);
      box.append(row);
    }
    for (const row of box.children) {
      const turn = Number(row.dataset.turn);
      this.renderVoteButtons(row.querySelector(".vote-buttons"), keys, turn);
      row.querySelector("button.unvote").disabled = !this.votes.has(turn);
    }
    box.hidden = this.turns < 2;
  }

  render() {
    const box = $("arena");
    const keys = this.keys();
    box.hidden = !this.sessionId || keys.length < 2;
    if (box.hidden) return;
    this.renderVoteButtons($("vote-buttons"), keys, 0);
    $("unvote").disabled = !this.votes.has(0);
    this.renderTurnVotes(keys);
    $("reveal").hidden = !this.blind || this.revealed;
    this.renderFlags();
  }

  send(event, extra = {}) {
    if (!this.sessionId) return;
    this.busy = true;
    socket.send(event, { sessionId: this.sessionId, ...extra });
  }

  fail(message) {
    this.busy = false;
    $("arena-status").textContent = message;
  }

  onEvent(event, data) {
    if (data.sessionId !== this.sessionId) return;
    this.busy = false;
    const turn = data.turn ?? 0;
    const onTurn = turn ? ` on turn ${turn}` : "";
    if (event === "voteRecorded") {
      this.votes.set(turn, data.winner);
      this.turns = Math.max(this.turns, turn + 1);
      const label = OUTCOMES.find(([k]) => k === data.winner)?.[1] ?? data.winner;
      $("arena-status").textContent = `Your vote${onTurn}: ${label}`;
    } else if (event === "voteRetracted") {
      this.votes.delete(turn);
      $("arena-status").textContent = `Vote${onTurn} withdrawn`;
    } else if (event === "revealed") {
      this.revealed = true;
      for (const model of data.models) {
        const column = byKey.get(`${data.sessionId} ${model.key}`);
        if (column) {
          column.spec = { ...column.spec, provider: model.provider, model: model.modelName, blind: true };
          column.queueRender();
        }
      }
      $("arena-status").textContent = "Revealed";
      historyList.refresh();
    } else if (event === "flagged" || event === "unflagged") {
      if (data.turn === 0 && event === "flagged") this.flags.add(data.key);
      if (data.turn === 0 && event === "unflagged") this.flags.delete(data.key);
      $("arena-status").textContent =
        event === "flagged" ? `Answer ${data.key} flagged: it names its model` : `Flag on answer ${data.key} withdrawn`;
    } else if (event === "tagsSet") {
      $("arena-tags").value = data.tags.join(", ");
      $("arena-status").textContent = data.tags.length ? `Tags: ${data.tags.join(", ")}` : "No tags";
    }
    this.render();
  }

  async share() {
    if (!this.sessionId) return;
    try {
      const response = await api(`/sessions/${encodeURIComponent(this.sessionId)}/share`, { method: "POST" });
      const { url } = await response.json();
      const link = $("share-link");
      link.value = url;
      link.hidden = false;
      try {
        await navigator.clipboard.writeText(url);
        $("arena-status").textContent = "Share link copied";
      } catch {
        link.select();
        $("arena-status").textContent = "Share link ready: copy it from the box";
      }
    } catch (err) {
      showError(`Could not share: ${err.message}`);
    }
  }
}

// --- Leaderboard --------------------------------------------------------------------------------
async function showLeaderboard() {
  const panel = $("leaderboard");
  panel.hidden = false;
  const params = new URLSearchParams({ scope: $("board-scope").value });
  const tag = $("board-tag").value.trim();
  if (tag) params.set("tag", tag);
  const since = $("board-since").value; // a local date: from its midnight
  if (since) params.set("since", new Date(`${since}T00:00`).toISOString());
  $("board-status").textContent = "Loading…";
  try {
    const board = await (await api(`/leaderboard?${params}`)).json();
    const rows = board.models.map((m) => {
      const tr = document.createElement("tr");
      const cells = [
        String(m.rank),
        `${m.provider} · ${m.model}`,
        `${m.rating.toFixed(0)} (${m.lower.toFixed(0)}–${m.upper.toFixed(0)})`,
        String(m.battles),
        `${(m.winRate * 100).toFixed(0)} %`,
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    $("board-rows").replaceChildren(...rows);
    $("board-status").textContent = rows.length
      ? `${board.votes} vote${board.votes === 1 ? "" : "s"}, ${board.battles} battle${board.battles === 1 ? "" : "s"}`
      : "No blind votes yet: run a blind battle, vote, then reveal.";
  } catch (err) {
    $("board-status").textContent = `Could not load the leaderboard: ${err.message}`;
  }
}

// --- Wiring -------------------------------------------------------------------------------------
const auth = new Auth((token) => socket.reauthenticate(token));
const socket = new Socket(auth, onEvent, rewatchRunning);
const historyList = new History();
const arena = new Arena();

function sessionFromUrl() {
  return new URLSearchParams(window.location.search).get("session");
}

function newComparison() {
  window.history.pushState({}, "", window.location.pathname);
  arena.close();
  view.sessionId = null;
  view.detail = null;
  view.status = null;
  clearColumns();
  historyList.markCurrent();
  $("prompt").focus();
}

async function main() {
  $("compose").addEventListener("submit", submit);
  for (const id of ["prompt", "system"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("compose").requestSubmit();
      }
    });
  }
  $("add-model").addEventListener("click", () => {
    const last = $("model-rows").lastElementChild?.querySelector("select");
    addModelRow(last ? JSON.parse(last.value) : null)?.querySelector("select").focus();
  });
  $("same-settings").addEventListener("change", syncModelTools);
  $("stop-all").addEventListener("click", () => {
    const sessions = new Set(columns.filter((c) => c.sessionId && RUNNING.has(c.status)).map((c) => c.sessionId));
    for (const sessionId of sessions) socket.send("cancelComparison", { sessionId });
  });
  $("export-md").addEventListener("click", () => exportAs("md"));
  $("export-json").addEventListener("click", () => exportAs("json"));
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("unvote").addEventListener("click", () => arena.send("unvote"));
  $("reveal").addEventListener("click", () => arena.send("reveal"));
  $("share").addEventListener("click", () => arena.share());
  $("tags-form").addEventListener("submit", (event) => {
    event.preventDefault();
    arena.saveTags();
  });
  $("show-leaderboard").addEventListener("click", showLeaderboard);
  $("board-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showLeaderboard();
  });
  $("board-close").addEventListener("click", () => {
    $("leaderboard").hidden = true;
  });
  $("history-more").addEventListener("click", () => historyList.more());
  $("followup").addEventListener("submit", sendFollowUp);
  $("new-comparison").addEventListener("click", newComparison);
  window.addEventListener("popstate", () => {
    const id = sessionFromUrl();
    if (id) openSession(id);
    else newComparison();
  });
  $("send").disabled = true;
  try {
    await auth.start();
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  setStatus(
    auth.mode === "dev"
      ? `Signed in as ${auth.userId} with the development key (DJANGO_DEBUG=1, no Clerk key)`
      : `Signed in as ${auth.userId}`,
    auth.mode === "dev" ? "dev" : "",
  );
  socket.connect();
  const id = sessionFromUrl();
  if (id) openSession(id);
  await Promise.all([loadCatalogue().catch((err) => showError(`Could not list the models: ${err.message}`)), historyList.refresh()]);
  $("send").disabled = false;
  document.body.dataset.ready = "true";
}

main();
