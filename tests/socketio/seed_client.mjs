// The seed frontend's way of talking to the server, for the compatibility tests:
//   const socket = io(url, { auth: { token } });
// Usage: node seed_client.mjs <url> <mode> <action> [args...]
//   mode:   default | websocket | polling  (default = the client's own: polling, then upgrade)
//   action: start <prompt> <provider>...   startComparison, until comparisonComplete
//           watch <sessionId>              watchSession, until comparisonComplete
//           followup <sessionId> <prompt>  sendFollowUp (with an ack), until comparisonComplete
//           continue <sessionId> <model> <prompt>  continueFrom (with an ack), likewise
//           connect                         connect only (prints connect or connect_error)
//           upgrade                         connect, then wait for the upgrade to WebSocket
// The token comes from the SEED_TOKEN environment variable (never a URL or an argument).
// Every event received is printed as one JSON line {"event", "data"}; exit 0 at the end.
//
// Or: node seed_client.mjs --batch
//   Runs one action after another, each read from stdin as one JSON line
//   {"url", "mode", "action", "args", "token", "timeoutMs"} (token null: none), each on a socket
//   of its own (a new io() call: its own connection, as in a fresh process). Prints the action's
//   events as above, then {"end": <its exit code>}. One Node start for many actions (~0.2 s of
//   CPU each).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");

/** Run one action; `done(code)` is called once, at its end (the socket is closed by then). */
function run({ url, mode, action, args, token, timeoutMs }, done) {
  const options = { auth: { token: token ?? "" } };
  if (mode === "websocket") options.transports = ["websocket"];
  if (mode === "polling") options.transports = ["polling"];
  if (!token) delete options.auth;

  const socket = io(url, options);
  let finished = false;
  // Nothing is printed after the end: a late event belongs to no action.
  const emit = (event, data) => {
    if (!finished) print(event, data);
  };
  const timer = setTimeout(() => {
    emit("timeout", null);
    finish(2);
  }, timeoutMs);
  function finish(code) {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.close();
    done(code);
  }

  // A refused follow-up ends here: no turn follows.
  const onAck = (ack) => {
    emit("ack", ack);
    if (ack?.error) finish(0);
  };

  socket.on("connect", () => {
    emit("connect", { transport: socket.io.engine.transport.name });
    if (action === "connect") finish(0);
    if (action === "start") {
      const [prompt, ...providers] = args;
      socket.emit("startComparison", { prompt, providers });
    }
    if (action === "watch") socket.emit("watchSession", { sessionId: args[0] });
    if (action === "followup") {
      const [sessionId, prompt] = args;
      socket.emit("sendFollowUp", { sessionId, prompt }, onAck);
    }
    if (action === "continue") {
      const [sessionId, model, prompt] = args;
      socket.emit("continueFrom", { sessionId, model, prompt }, onAck);
    }
  });
  socket.on("connect_error", (err) => {
    emit("connect_error", { message: err.message, data: err.data ?? null });
    finish(0);
  });
  for (const name of [
    "sessionCreated",
    "turnStarted",
    "sessionSnapshot",
    "modelStatus",
    "modelChunk",
    "modelComplete",
    "modelError",
    "error",
  ]) {
    socket.on(name, (data) => emit(name, data));
  }
  socket.on("comparisonComplete", (data) => {
    emit("comparisonComplete", data);
    finish(0);
  });
  socket.io.engine?.on("upgrade", (transport) => {
    emit("upgrade", { transport: transport.name });
    if (action === "upgrade") finish(0);
  });
}

if (process.argv[2] === "--batch") {
  const requests = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  for (;;) {
    const { value: line, done: closed } = await requests.next();
    if (closed) break;
    const code = await new Promise((resolve) => run(JSON.parse(line), resolve));
    process.stdout.write(JSON.stringify({ end: code }) + "\n");
  }
  process.exit(0);
} else {
  const [url, mode, action, ...args] = process.argv.slice(2);
  const timeoutMs = Number(process.env.SEED_TIMEOUT_MS ?? 30000);
  run({ url, mode, action, args, token: process.env.SEED_TOKEN, timeoutMs }, (code) =>
    process.exit(code),
  );
}
