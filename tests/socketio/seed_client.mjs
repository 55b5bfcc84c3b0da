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
import { io } from "socket.io-client";

const [url, mode, action, ...args] = process.argv.slice(2);
const options = { auth: { token: process.env.SEED_TOKEN ?? "" } };
if (mode === "websocket") options.transports = ["websocket"];
if (mode === "polling") options.transports = ["polling"];
if (!process.env.SEED_TOKEN) delete options.auth;

const socket = io(url, options);
const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const finish = (code) => {
  socket.close();
  process.exit(code);
};
setTimeout(() => {
  print("timeout", null);
  finish(2);
}, Number(process.env.SEED_TIMEOUT_MS ?? 30000));

// A refused follow-up ends here: no turn follows.
const onAck = (ack) => {
  print("ack", ack);
  if (ack?.error) finish(0);
};

socket.on("connect", () => {
  print("connect", { transport: socket.io.engine.transport.name });
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
  print("connect_error", { message: err.message, data: err.data ?? null });
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
  socket.on(name, (data) => print(name, data));
}
socket.on("comparisonComplete", (data) => {
  print("comparisonComplete", data);
  finish(0);
});
socket.io.engine?.on("upgrade", (transport) => {
  print("upgrade", { transport: transport.name });
  if (action === "upgrade") finish(0);
});
