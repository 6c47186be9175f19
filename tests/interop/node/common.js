// Helpers shared by echo_server.js and client.js: JSON lines on stdout, and
// the description of a received message that the Python tests read.
'use strict';

const crypto = require('crypto');

// Messages up to this size are printed in full; bigger ones by length and
// SHA-256 only, so that a 4 MiB message doesn't become a 6 MB line.
const INLINE_LIMIT = 64 * 1024;

function emit(event) {
  // On Linux, writes to a pipe are synchronous: a line is out before exit.
  process.stdout.write(JSON.stringify(event) + '\n');
}

function describe(data, isBinary) {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  const event = {
    event: 'message',
    binary: isBinary,
    length: buffer.length,
    sha256: crypto.createHash('sha256').update(buffer).digest('hex'),
  };
  if (buffer.length <= INLINE_LIMIT) {
    if (isBinary) {
      event.b64 = buffer.toString('base64');
    } else {
      event.text = buffer.toString('utf8');
    }
  }
  return event;
}

// A payload given by the test: {"text": "..."} or {"b64": "..."}.
function payload(command) {
  if (command.b64 !== undefined) {
    return { data: Buffer.from(command.b64, 'base64'), binary: true };
  }
  return { data: Buffer.from(command.text, 'utf8'), binary: false };
}

// Exit when the test closes our stdin (or dies): no orphan processes.
function exitOnStdinEnd(cleanup) {
  process.stdin.on('end', () => {
    cleanup();
    process.exit(0);
  });
  process.stdin.resume();
}

module.exports = { emit, describe, payload, exitOnStdinEnd };
