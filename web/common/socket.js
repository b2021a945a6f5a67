// A WebSocket to /v1/ws that reconnects with backoff and re-syncs the
// conversations it follows from the last seq it saw (docs/protocol.md).
// Staff dashboards use it; the widget has its own copy inside its one file
// because it must load as a single classic script on a customer's site.

export class Socket {
  /**
   * `token()` returns the current Bearer token; `onFrame(frame)` receives every
   * server frame; `onState("connecting"|"open"|"closed", info)` reports the link.
   */
  constructor({ base = location.origin, token, onFrame, onState = () => {} }) {
    this.url = base.replace(/^http/, "ws") + "/v1/ws";
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.followed = new Map(); // conversation_id → last seq seen
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
    addEventListener("online", () => this.#reconnectNow());
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000, "bye");
  }

  get open() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends a frame; false when the link is down (the caller keeps it to retry). */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Follows a conversation: replay after `lastSeq`, then live events. */
  follow(conversationId, lastSeq = 0) {
    const known = this.followed.get(conversationId) ?? lastSeq;
    this.followed.set(conversationId, known);
    this.send({ type: "subscribe", conversation_id: conversationId, last_seq: known });
  }

  unfollow(conversationId) {
    this.followed.delete(conversationId);
    this.send({ type: "unsubscribe", conversation_id: conversationId });
  }

  #connect() {
    clearTimeout(this.timer);
    this.onState("connecting", { attempt: this.attempt });
    const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(this.token())}`);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onState("open");
      for (const [id, seq] of this.followed) ws.send(JSON.stringify({ type: "subscribe", conversation_id: id, last_seq: seq }));
    };
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame.type === "message" && this.followed.has(frame.conversation_id)) {
        const seq = frame.message.seq;
        if (seq > this.followed.get(frame.conversation_id)) this.followed.set(frame.conversation_id, seq);
      }
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.onState("closed", { code: ev.code, reason: ev.reason });
      // 1008 (policy: rate limit, user gone) and 4001 (too slow) are worth a
      // retry after a pause; a stop() is not.
      if (!this.stopped) this.#schedule();
    };
  }

  #schedule() {
    const delay = Math.min(10_000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #reconnectNow() {
    if (this.stopped || this.open) return;
    this.attempt = 0;
    this.#connect();
  }
}
