// What the page knows, without any I/O or DOM: each dialog's summary for the list, and the
// messages held for each dialog that was opened, keyed by `seq` so none shows twice.

/** The messages of one dialog that the page holds: a window [lo, …] of its seqs. */
export class DialogMessages {
  constructor() {
    this.bySeq = new Map();
    this.fetching = false; // the newest page is on its way: live messages are kept meanwhile
    this.loaded = false; // the newest page came: `position` means something
    this.lo = null; // smallest seq held
    this.hi = 0; // highest seq with every seq from lo up to it held
    this.atStart = false; // nothing older than lo exists
  }

  /** Adds messages; returns those not held before, in seq order. */
  add(messages) {
    const added = [];
    for (const message of messages) {
      if (this.bySeq.has(message.seq)) continue;
      this.bySeq.set(message.seq, message);
      added.push(message);
      if (this.lo === null || message.seq < this.lo) this.lo = message.seq;
    }
    if (this.lo !== null) {
      this.hi = Math.max(this.hi, this.lo - 1);
      while (this.bySeq.has(this.hi + 1)) this.hi += 1;
    }
    if (this.lo === 1) this.atStart = true;
    return added.sort((a, b) => a.seq - b.seq);
  }

  /** True when a live message leaves a hole after what is held: time to `sync`. */
  hasGap() {
    return this.loaded && this.bySeq.size > 0 && Math.max(...this.bySeq.keys()) > this.hi;
  }

  /** The seq to `sync` from: everything after it is wanted. */
  get position() {
    return this.hi;
  }

  sorted() {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }
}

/**
 * One entry of the dialog list: the server's fields (`dialogs`), kept current by pushes and by
 * what this page sees arrive. `reads` holds both members' read marks (user id -> seq).
 */
export function newSummary(id, peer) {
  return { id, peer, last: null, unread: 0, online: undefined, reads: {}, order: 0 };
}

export class ChatState {
  constructor() {
    this.me = null; // {id, username}
    this.dialogs = new Map(); // id -> summary
    this.messages = new Map(); // id -> DialogMessages
    this.openId = null;
    this.moves = 0; // dialogs moved to the front since the last `dialogs`
  }

  /** Activity in a dialog (a newer message, a dialog just opened): it goes to the list's front. */
  toFront(summary) {
    this.moves += 1;
    summary.order = -this.moves;
  }

  /**
   * Merge one page of a `dialogs` reply (or `open_dialog`'s dialog, which has only `peer`);
   * `offset` is where the page starts in the server's order (most recently active first).
   */
  mergeDialogs(list, offset = 0) {
    list.forEach((dialog, index) => {
      let summary = this.dialogs.get(dialog.id);
      if (!summary) {
        summary = newSummary(dialog.id, dialog.peer);
        this.dialogs.set(dialog.id, summary);
        summary.order = offset + index;
      }
      summary.peer = { id: dialog.peer.id, username: dialog.peer.username };
      if (typeof dialog.peer.online === "boolean") summary.online = dialog.peer.online;
      const last = dialog.last_message;
      if (last && (!summary.last || last.seq > summary.last.seq)) summary.last = last;
      if (typeof dialog.unread === "number") summary.unread = dialog.unread;
      for (const [user, seq] of Object.entries(dialog.reads || {})) this.noteRead(dialog.id, user, seq);
      if ("last_message" in dialog) summary.order = offset + index; // a `dialogs` item: the server's order
    });
  }

  /** A read mark (from `dialogs`, `synced` or a `read` push): marks only move forward. */
  noteRead(dialogId, userId, seq) {
    const summary = this.dialogs.get(dialogId);
    if (!summary) return false;
    const key = String(userId);
    if (!(summary.reads[key] >= seq)) summary.reads[key] = seq;
    return true;
  }

  /** How far the peer has read in this dialog (0: nothing). */
  peerRead(dialogId) {
    const summary = this.dialogs.get(dialogId);
    return (summary && summary.reads[String(summary.peer.id)]) || 0;
  }

  /** A `presence` push: every dialog with that user shows it. */
  setOnline(userId, online) {
    for (const summary of this.dialogs.values()) {
      if (summary.peer.id === userId) summary.online = online;
    }
  }

  /** A `user` push: a peer's new name, in every dialog with them. */
  renamePeer(user) {
    for (const summary of this.dialogs.values()) {
      if (summary.peer.id === user.id) summary.peer = { ...summary.peer, username: user.username };
    }
  }

  messagesOf(id) {
    let held = this.messages.get(id);
    if (!held) {
      held = new DialogMessages();
      this.messages.set(id, held);
    }
    return held;
  }

  /**
   * Note a message in its dialog's summary; returns false when the dialog is not known yet.
   * A live message carries its sender's name as it is now: a peer's rename shows with it.
   */
  noteMessage(message, { live, unread }) {
    const summary = this.dialogs.get(message.dialog_id);
    if (!summary) return false;
    if (!summary.last || message.seq > summary.last.seq) {
      summary.last = message;
      this.toFront(summary);
    }
    if (message.sender.id !== this.me.id) {
      if (live) summary.peer = { ...summary.peer, username: message.sender.username };
      if (unread) summary.unread += 1;
    }
    return true;
  }

  /** Positions to `sync` from, for every dialog whose messages the page holds. */
  positions() {
    const positions = {};
    for (const [id, held] of this.messages) {
      if (held.loaded) positions[id] = held.position;
    }
    return positions;
  }

  /** Dialogs in the server's order (most recently active first), with later activity in front. */
  orderedDialogs() {
    return [...this.dialogs.values()].sort((a, b) => a.order - b.order);
  }
}
