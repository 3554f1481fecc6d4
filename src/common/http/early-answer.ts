import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** How long a connection answered before its body was read stays open for the client to read the answer. */
export const LINGER_MS = 1000;
/** A body announced this small is read (and discarded) after the answer rather than left unread. */
const DISCARD_MAX_BYTES = 64 * 1024;
/** Connections lingering at once, at most: past it, new ones are closed at once (fds stay bounded). */
const LINGER_MAX_SOCKETS = 64;

let lingering = 0;

/**
 * Prepares `response` to answer a request whose body the gateway will not read (refused from its
 * headers: no key, too large, bad path, busy). The answer carries `connection: close`. Once it is
 * written the gateway sends FIN and keeps the socket up to LINGER_MS before closing it, so that a client
 * still sending reads the answer instead of meeting a reset (RFC 9112 §9.6: close your half first,
 * then wait). While it waits it reads (and discards) a small announced body, so the client's own close
 * is seen at once; anything larger or unannounced is not read at all: only what the kernel already
 * holds. At most LINGER_MAX_SOCKETS connections linger at once. A request whose body has arrived whole
 * needs none of this.
 */
export function closeAfterAnswer(request: IncomingMessage, response: ServerResponse): void {
  if (request.complete || response.headersSent) return;
  response.setHeader('connection', 'close');
  const length = request.headers['content-length'];
  const small = length !== undefined && Number(length) <= DISCARD_MAX_BYTES;
  const socket = request.socket as Socket & { destroySoon?: () => void };
  // Node's server calls destroySoon() once a `connection: close` answer is written: it would close
  // both halves at once, and an unread body in the socket makes the kernel answer with a reset.
  socket.destroySoon = () => {
    if (lingering >= LINGER_MAX_SOCKETS) {
      socket.destroy();
      return;
    }
    lingering++;
    socket.end();
    // After the answer Node resumes the request to discard its body (on the next tick): stop reading after that.
    if (!small) setImmediate(() => socket.pause());
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      lingering--;
      clearTimeout(timer);
    });
  };
}
