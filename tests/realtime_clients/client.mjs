// A scriptable socket.io-client for the tests and benches (driven by tests/node_clients.py).
//
// Options: one JSON object, as the first command-line argument or (when there is none) as the
// first line of stdin, so that a token need not appear in the process list:
//   {"url": "http://127.0.0.1:8000", "path": "/api/v1/socket.io", "token": "…",
//    "projectId": "…", "count": 1, "transports": ["websocket"], "reconnection": false,
//    "auth": {…} (replaces {token}), "query": {…} (merged with {projectId}),
//    "quiet": false, "latencyField": "sentAt", "sequenceField": "seq", "measure": null}
//
// Output: one JSON line per happening, {"event", "data", "t" (epoch ms, fractional), "client"}:
//   every server event (data = its only argument, or the list of them), and "connect" (data:
//   {id}), "connect_error" (data: {message, data}), "disconnect" (data: {reason, description}),
//   "ack" (data: the server's answer to an emit with "ack": true), "ready" once every client
//   has connected or failed (data: {connected, failed}), "report" (see below), "error".
//
// Commands: JSON lines on stdin.
//   {"emit": "reauth", "data": {…}, "client": 0, "ack": false}  client omitted → every client
//   {"auth": {…}, "client": 0}   the handshake auth of later reconnections
//   {"report": true}             prints the fan-out report (see "quiet"); "reset": true also
//                                clears what it counted; "full": false prints only the counts
//   {"close": true}              disconnects every client and exits; so does the end of stdin
//
// "quiet" (the fan-out bench): server events are not printed one by one; each is counted per
// client and name, and when its data carries the "latencyField" (epoch ms at which it was
// sent) the delivery latency is recorded (only for the event named "measure", when given). "report" prints {received: {name: [count per client]},
// latencies: [ms…] (sorted), sequences: [[seq…] per client]}.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const now = () => performance.timeOrigin + performance.now();
const print = (event, data, client) =>
  process.stdout.write(JSON.stringify({ event, data, t: now(), client }) + "\n");

function readFirstLine() {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.once("line", (line) => resolve({ line, lines }));
    lines.once("close", () => resolve({ line: null, lines }));
  });
}

let options;
let lines;
if (process.argv[2]) {
  options = JSON.parse(process.argv[2]);
  lines = createInterface({ input: process.stdin });
} else {
  const first = await readFirstLine();
  if (first.line === null) {
    print("error", { message: "no options: give them as argv[2] or the first stdin line" });
    process.exit(2);
  }
  options = JSON.parse(first.line);
  lines = first.lines;
}

const count = options.count ?? 1;
const quiet = Boolean(options.quiet);
const latencyField = options.latencyField ?? "sentAt";
const sequenceField = options.sequenceField ?? "seq";
const measure = options.measure ?? null;
const query = { ...(options.query ?? {}) };
if (options.projectId !== undefined) query.projectId = options.projectId;
const auth = options.auth ?? (options.token !== undefined ? { token: options.token } : {});

let received = {};
let latencies = [];
let sequences = Array.from({ length: count }, () => []);
let settled = 0;
let connected = 0;
const sockets = [];

function settle(ok) {
  settled += 1;
  if (ok) connected += 1;
  if (settled === count) print("ready", { connected, failed: count - connected });
}

for (let i = 0; i < count; i++) {
  const socket = io(options.url, {
    path: options.path ?? "/socket.io",
    auth: { ...auth },
    query,
    transports: options.transports ?? ["websocket"],
    reconnection: options.reconnection ?? false,
    forceNew: true, // one connection per client, never multiplexed on a shared Manager
    timeout: options.timeout ?? 20000,
  });
  let first = true;
  socket.on("connect", () => {
    if (!quiet) print("connect", { id: socket.id }, i);
    if (first) settle(true);
    first = false;
  });
  socket.on("connect_error", (err) => {
    print("connect_error", { message: err.message, data: err.data ?? null }, i);
    if (first) settle(false);
    first = false;
  });
  socket.on("disconnect", (reason, details) => {
    const description = details instanceof Error ? details.message : (details ?? null);
    print("disconnect", { reason, description }, i);
  });
  socket.onAny((event, ...args) => {
    const data = args.length === 1 ? args[0] : args;
    if (!quiet) {
      print(event, data, i);
      return;
    }
    const t = now();
    (received[event] ??= new Array(count).fill(0))[i] += 1;
    if (measure !== null && event !== measure) return;
    if (data && typeof data === "object") {
      if (typeof data[latencyField] === "number") latencies.push(t - data[latencyField]);
      if (data[sequenceField] !== undefined) sequences[i].push(data[sequenceField]);
    }
  });
  sockets.push(socket);
}

function targets(command) {
  return command.client === undefined ? sockets : [sockets[command.client]];
}

function closeAll() {
  for (const socket of sockets) socket.disconnect();
  // Give the disconnect lines a turn of the event loop to be written.
  setImmediate(() => process.exit(0));
}

lines.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    print("error", { message: `not JSON: ${err.message}` });
    return;
  }
  if (command.close) {
    closeAll();
  } else if (command.report) {
    if (command.full === false) {
      print("report", { received, latencyCount: latencies.length });
      return;
    }
    latencies.sort((a, b) => a - b);
    print("report", { received, latencies, sequences });
    if (command.reset) {
      received = {};
      latencies = [];
      sequences = Array.from({ length: count }, () => []);
    }
  } else if (command.auth) {
    for (const socket of targets(command)) socket.auth = command.auth;
  } else if (command.emit) {
    targets(command).forEach((socket) => {
      const index = sockets.indexOf(socket);
      if (command.ack) {
        socket.emit(command.emit, command.data, (...answer) =>
          print("ack", answer.length === 1 ? answer[0] : answer, index),
        );
      } else {
        socket.emit(command.emit, command.data);
      }
    });
  } else {
    print("error", { message: `unknown command: ${line}` });
  }
});
lines.on("close", closeAll);
