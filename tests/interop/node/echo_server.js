// A WebSocket server on the ws package, started by tests/test_interop_node.py.
//
// Usage: node echo_server.js '{"perMessageDeflate": true, "subprotocols": ["a"],
//                              "tls": {"cert": "cert.pem", "key": "key.pem"}}'
//
// Binds 127.0.0.1 on a free port and prints {"event": "listening", "port": N}
// on stdout, then one JSON line per connection event: "connection" (path,
// negotiated subprotocol, the client's Sec-WebSocket-Extensions offer), "close"
// (code and reason the client sent), "error". Exits when stdin closes.
//
// Any path but /control echoes every message with its type. On /control, each
// text message is a JSON command:
//   {"op": "fragments", "chunks": [{"text": "..."} | {"b64": "..."}, ...]}
//       send one message in those fragments (fin: false until the last one)
//   {"op": "ping", "b64": "..."}   ping; the pong is reported as a text message
//                                  {"event": "pong", "b64": "..."}
//   {"op": "close", "code": 4000, "reason": "..."}   close with that code
'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');
const { emit, payload, exitOnStdinEnd } = require('./common');

const config = JSON.parse(process.argv[2] || '{}');

function sendFragments(ws, chunks) {
  chunks.forEach((chunk, index) => {
    const { data, binary } = payload(chunk);
    ws.send(data, { binary, fin: index === chunks.length - 1 });
  });
}

function control(ws, message) {
  const command = JSON.parse(message.toString('utf8'));
  if (command.op === 'fragments') {
    sendFragments(ws, command.chunks);
  } else if (command.op === 'ping') {
    ws.ping(Buffer.from(command.b64, 'base64'));
  } else if (command.op === 'close') {
    ws.close(command.code, command.reason);
  } else {
    ws.close(4400, `unknown op ${command.op}`);
  }
}

let httpServer = null;
const options = {
  perMessageDeflate: Boolean(config.perMessageDeflate),
  // Above the largest message the tests send (a few MiB).
  maxPayload: 64 * 1024 * 1024,
};
if (config.subprotocols) {
  // The server's order of preference wins, as in wssync and websockets.
  options.handleProtocols = (offered) => {
    const chosen = config.subprotocols.find((name) => offered.has(name));
    return chosen === undefined ? false : chosen;
  };
}
if (config.tls) {
  httpServer = https.createServer({
    cert: fs.readFileSync(config.tls.cert),
    key: fs.readFileSync(config.tls.key),
  });
  options.server = httpServer;
} else {
  options.host = '127.0.0.1';
  options.port = 0;
}

const wss = new WebSocketServer(options);

wss.on('connection', (ws, request) => {
  const path = request.url;
  emit({
    event: 'connection',
    path,
    protocol: ws.protocol,
    offer: request.headers['sec-websocket-extensions'] || null,
  });
  ws.on('message', (data, isBinary) => {
    if (path === '/control') {
      control(ws, data);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on('pong', (data) => {
    ws.send(JSON.stringify({ event: 'pong', b64: data.toString('base64') }));
  });
  ws.on('close', (code, reason) => {
    emit({ event: 'close', path, code, reason: reason.toString('utf8') });
  });
  ws.on('error', (error) => {
    emit({ event: 'error', path, message: String(error.message) });
  });
});

function listening(address) {
  emit({ event: 'listening', port: address.port });
}

if (httpServer) {
  httpServer.listen(0, '127.0.0.1', () => listening(httpServer.address()));
} else {
  wss.on('listening', () => listening(wss.address()));
}

exitOnStdinEnd(() => {
  for (const ws of wss.clients) {
    ws.terminate();
  }
  wss.close();
  if (httpServer) {
    httpServer.close();
  }
});
