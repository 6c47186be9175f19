// A WebSocket client on the ws package, driven by tests/test_interop_node.py.
//
// Usage: node client.js '{"url": "ws://127.0.0.1:8765/", "protocols": ["a"],
//                         "perMessageDeflate": true, "ca": "ca.pem"}'
//
// Prints one JSON line per event on stdout:
//   {"event": "open", "protocol": "...", "extensions": "<response header>"}
//   {"event": "message", "binary": b, "length": n, "sha256": "...", "text"|"b64": ...}
//   {"event": "pong", "b64": "..."}
//   {"event": "close", "code": n, "reason": "..."}
//   {"event": "error", "message": "..."}
// and reads one JSON command per line on stdin:
//   {"op": "send", "text": "..." | "b64": "...", "fin": true}
//       fin: false sends a fragment; the next sends continue the message
//   {"op": "ping", "b64": "..."}
//   {"op": "close", "code": 1000, "reason": "..."}
// Exits when stdin closes.
'use strict';

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');
const { emit, describe, payload } = require('./common');

const config = JSON.parse(process.argv[2]);

const options = {
  perMessageDeflate: Boolean(config.perMessageDeflate),
  maxPayload: 64 * 1024 * 1024,
};
if (config.ca) {
  options.ca = fs.readFileSync(config.ca);
}

const ws = new WebSocket(config.url, config.protocols || [], options);
let responseExtensions = null;

ws.on('upgrade', (response) => {
  responseExtensions = response.headers['sec-websocket-extensions'] || null;
});
ws.on('open', () => {
  emit({ event: 'open', protocol: ws.protocol, extensions: responseExtensions });
});
ws.on('message', (data, isBinary) => emit(describe(data, isBinary)));
ws.on('pong', (data) => emit({ event: 'pong', b64: data.toString('base64') }));
ws.on('close', (code, reason) => {
  emit({ event: 'close', code, reason: reason.toString('utf8') });
});
ws.on('error', (error) => emit({ event: 'error', message: String(error.message) }));

function run(command) {
  if (command.op === 'send') {
    const { data, binary } = payload(command);
    ws.send(data, { binary, fin: command.fin !== false });
  } else if (command.op === 'ping') {
    ws.ping(Buffer.from(command.b64, 'base64'));
  } else if (command.op === 'close') {
    ws.close(command.code, command.reason);
  } else {
    emit({ event: 'error', message: `unknown op ${command.op}` });
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  if (line.trim()) {
    try {
      run(JSON.parse(line));
    } catch (error) {
      emit({ event: 'error', message: String(error.message) });
    }
  }
});
lines.on('close', () => {
  ws.terminate();
  process.exit(0);
});
