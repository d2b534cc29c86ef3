// One WebSocket to `/ws` on this page's origin, reopened with backoff whenever it drops.
// Requests carry a `ref` and resolve with their direct reply (docs/PROTOCOL.md); everything
// else (live messages, `renamed`, `resync`, presence, typing, read marks…) goes to `onPush`.

export class RequestError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.code = frame.code;
    this.retryAfterMs = typeof frame.retry_after_ms === "number" ? frame.retry_after_ms : null;
  }
}

/** The socket closed (or was never open) before the reply came. */
export class ConnectionLost extends Error {}

/** No reply within the time allowed; the request may still have been handled. */
export class RequestTimeout extends Error {}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
// A socket whose requests keep timing out is taken for dead (a half-open TCP connection
// reports nothing) and reopened.
const TIMEOUTS_BEFORE_REOPEN = 3;

export function socketUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class Connection {
  /**
   * @param {string} url
   * @param {{onOpen: () => void, onClose: (retryInMs: number) => void, onPush: (frame: object) => void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.nextRef = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.timeouts = 0;
    this.stopped = true;
    window.addEventListener("online", () => this.retryNow());
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Close for good (log out); `start()` opens a fresh socket again. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "logged out");
    this.failPending();
  }

  /** Drop this socket and open another (the session is in doubt). */
  reopen() {
    if (this.ws) this.ws.close(4000, "reopening");
  }

  /** The session works on this socket: the next drop starts the backoff from the beginning. */
  settled() {
    this.attempt = 0;
  }

  retryNow() {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.connect();
    }
  }

  connect() {
    this.retryTimer = null;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.timeouts = 0;
      this.handlers.onOpen();
    });
    ws.addEventListener("message", (event) => {
      if (ws === this.ws) this.receive(event.data);
    });
    ws.addEventListener("close", () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.failPending();
      if (this.stopped) return;
      const delay = this.nextDelay();
      this.retryTimer = setTimeout(() => this.connect(), delay);
      this.handlers.onClose(delay);
    });
  }

  nextDelay() {
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // Full jitter on the upper half, so many clients of one dead gateway don't return at once.
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("ignored a frame that is not JSON", data);
      return;
    }
    this.timeouts = 0;
    const waiting = typeof frame.ref === "string" ? this.pending.get(frame.ref) : undefined;
    if (waiting === undefined) {
      this.handlers.onPush(frame);
      return;
    }
    this.pending.delete(frame.ref);
    clearTimeout(waiting.timer);
    if (frame.type === "error") waiting.reject(new RequestError(frame));
    else waiting.resolve(frame);
  }

  /** Send a request; resolves with its reply, rejects with one of the errors above. */
  request(frame, timeoutMs = 10_000) {
    if (!this.open) return Promise.reject(new ConnectionLost("not connected"));
    const ref = `r${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new RequestTimeout(`no reply to ${frame.type} in ${timeoutMs / 1000} s`));
        this.timeouts += 1;
        if (this.timeouts >= TIMEOUTS_BEFORE_REOPEN) this.reopen();
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  failPending() {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const { reject, timer } of pending) {
      clearTimeout(timer);
      reject(new ConnectionLost("connection closed"));
    }
  }
}
