// Messages typed but not yet acknowledged (`sent`), sent one at a time in the order typed.
// Each keeps its client_msg_id across attempts: after a timeout or a dropped connection the
// same id is sent again, and the server returns the first message instead of storing a second
// one (docs/PROTOCOL.md, "Sending"). Kept in localStorage, so a reload does not lose them.

import { ConnectionLost, RequestError, RequestTimeout } from "./connection.js";

const RETRY_PAUSE_MS = 1000;
const MAX_RETRY_PAUSE_MS = 10_000;

export function newClientMsgId() {
  // crypto.randomUUID exists only in secure contexts; a page served over plain http from
  // another host is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Outbox {
  /**
   * @param {{request: (frame: object) => Promise<object>, canSend: () => boolean,
   *          onSent: (item: object, message: object) => void,
   *          onFailed: (item: object, error: Error) => void,
   *          onChange: (item: object) => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.items = [];
    this.storageKey = null;
    this.pumping = false;
  }

  /** Take over the unsent messages a previous page of this user left. */
  load(userId) {
    this.storageKey = `chat.outbox.${userId}`;
    try {
      this.items = JSON.parse(localStorage.getItem(this.storageKey) || "[]");
    } catch {
      this.items = [];
    }
    for (const item of this.items) item.state = "waiting";
  }

  clear() {
    if (this.storageKey) localStorage.removeItem(this.storageKey);
    this.items = [];
    this.storageKey = null;
  }

  save() {
    if (this.storageKey) localStorage.setItem(this.storageKey, JSON.stringify(this.items));
  }

  add(dialogId, text) {
    const item = { clientMsgId: newClientMsgId(), dialogId, text, attempts: 0, state: "waiting" };
    this.items.push(item);
    this.save();
    this.pump();
    return item;
  }

  pendingIn(dialogId) {
    return this.items.filter((item) => item.dialogId === dialogId);
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let pause = RETRY_PAUSE_MS;
      while (this.items.length > 0 && this.hooks.canSend()) {
        const item = this.items[0];
        const retry = await this.attempt(item);
        if (retry === "stop") return;
        if (typeof retry === "number") {
          await sleep(retry); // `rate_limited`: the server said when
        } else if (retry === "later") {
          await sleep(pause);
          pause = Math.min(MAX_RETRY_PAUSE_MS, pause * 2);
        } else {
          pause = RETRY_PAUSE_MS;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * One try at the first item: "done", "later" (same id again after a pause), a number (same id
   * again after that many ms, as `rate_limited` asks) or "stop".
   */
  async attempt(item) {
    item.attempts += 1;
    item.state = item.attempts > 1 ? "retrying" : "sending";
    this.hooks.onChange(item);
    try {
      const reply = await this.hooks.request({
        type: "send", dialog_id: item.dialogId, text: item.text, client_msg_id: item.clientMsgId,
      });
      this.remove(item);
      this.hooks.onSent(item, reply.message);
      return "done";
    } catch (error) {
      if (error instanceof RequestTimeout) return "later";
      if (error instanceof RequestError && error.code === "unavailable") return "later";
      if (error instanceof RequestError && error.code === "rate_limited") return Math.max(50, error.retryAfterMs ?? RETRY_PAUSE_MS);
      if (error instanceof ConnectionLost) {
        item.state = "waiting"; // pumped again once the connection is back
        this.hooks.onChange(item);
        return "stop";
      }
      this.remove(item);
      this.hooks.onFailed(item, error);
      return "done";
    }
  }

  remove(item) {
    this.items = this.items.filter((other) => other !== item);
    this.save();
  }
}
