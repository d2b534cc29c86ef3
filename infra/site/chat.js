// The logged-in part: the dialog list, one open dialog with its history, live messages,
// catching up after a reconnect (`sync`), and sending through the outbox.

import { MessageList } from "./message-list.js";
import { Outbox } from "./outbox.js";
import { ChatState } from "./state.js";
import { dialogItem } from "./view.js";

const PAGE = 50;
// Renames and presence come pushed (`user`, `presence`), at most once: `dialogs` again on focus
// and at this modest rate while the page is visible makes up for a push missed.
const DIALOGS_REFRESH_MS = 30_000;
const OPEN_KEY = "chat.open";
// `typing` at most this often while the user types; "… is typing" shown this long after one.
const TYPING_SEND_MS = 2000;
const TYPING_SHOW_MS = 4000;

export class Chat {
  constructor(connection, ui) {
    this.connection = connection;
    this.ui = ui; // elements by name (see app.js)
    this.state = new ChatState();
    this.ready = false; // logged in on the current socket, caught up
    this.loadingOlder = false;
    this.syncing = null;
    this.typingSentAt = 0;
    this.typingTimer = null;
    this.typingIn = null; // the dialog whose peer is typing now
    this.readSent = new Map(); // dialog id -> highest seq this page sent `read` for
    this.outbox = new Outbox({
      request: (frame) => this.connection.request(frame),
      canSend: () => this.ready && this.connection.open,
      onSent: (item, message) => this.sent(item, message),
      onFailed: (item, error) => this.failed(item, error),
      onChange: (item) => this.pendingChanged(item),
    });
    setInterval(() => this.refreshQuietly(), DIALOGS_REFRESH_MS);
    window.addEventListener("focus", () => this.refreshQuietly());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        this.refreshQuietly();
        this.markRead();
      }
    });
    this.messageList = new MessageList(ui.messageList, () => this.state.me?.id, () => this.loadOlder());
  }

  /** A fresh login (or a reload): forget everything another user's session left. */
  start(me) {
    if (this.state.me && this.state.me.id === me.id) {
      this.state.me = me;
      return;
    }
    this.state = new ChatState();
    this.state.me = me;
    this.readSent.clear();
    this.outbox.load(me.id);
    this.messageList.clear();
  }

  stop() {
    this.ready = false;
    this.outbox.clear();
    this.state = new ChatState();
    this.readSent.clear();
    this.showTyping(null);
    sessionStorage.removeItem(OPEN_KEY);
    this.messageList.clear();
    this.ui.dialogList.replaceChildren();
  }

  /** The socket is logged in: list dialogs, catch up on what was missed, resend what waits. */
  async resume() {
    await this.refreshDialogs(true);
    await this.catchUp();
    this.ready = true;
    const wanted = this.state.openId || sessionStorage.getItem(OPEN_KEY);
    if (wanted && this.state.dialogs.has(wanted)) await this.openDialog(wanted);
    this.outbox.pump();
  }

  suspend() {
    this.ready = false;
  }

  async refreshDialogs(force = false) {
    if (!force && !(this.ready && this.connection.open && document.visibilityState === "visible")) return;
    // Every page, following `next_cursor`: the server gives them most recently active first.
    let cursor;
    let offset = 0;
    do {
      const reply = await this.connection.request(cursor ? { type: "dialogs", cursor } : { type: "dialogs" });
      this.state.mergeDialogs(reply.dialogs, offset);
      offset += reply.dialogs.length;
      cursor = reply.next_cursor;
    } while (cursor);
    this.renderDialogs();
    this.markRead(); // the dialog being read has no unread, whatever a `dialogs` asked meanwhile says
  }

  /** A refresh nobody waits for: a failure only means the names shown may be older. */
  refreshQuietly() {
    this.refreshDialogs().catch((error) => console.warn("refreshing the dialog list failed", error));
  }

  /** `sync` every dialog the page holds messages of, from where it holds them up to. */
  catchUp() {
    if (!this.syncing) {
      this.syncing = this.syncAll().finally(() => {
        this.syncing = null;
      });
    }
    return this.syncing;
  }

  async syncAll() {
    let positions = this.state.positions();
    while (Object.keys(positions).length > 0) {
      const reply = await this.connection.request({ type: "sync", dialogs: positions });
      for (const message of reply.messages) this.receive(message, { live: false });
      for (const [dialogId, marks] of Object.entries(reply.reads || {})) {
        for (const [user, seq] of Object.entries(marks)) this.state.noteRead(dialogId, user, seq);
      }
      if (!reply.more) break;
      positions = reply.dialogs;
    }
    this.renderDialogs();
  }

  onPush(frame) {
    if (frame.type === "message") {
      this.receive(frame.message, { live: true });
      this.renderDialogs();
    } else if (frame.type === "resync") {
      this.catchUp().catch((error) => console.warn("sync after resync failed", error));
    } else if (frame.type === "presence") {
      this.state.setOnline(frame.user_id, frame.online);
      this.renderDialogs();
    } else if (frame.type === "user") {
      this.state.renamePeer(frame.user);
      this.renderDialogs();
    } else if (frame.type === "read") {
      this.state.noteRead(frame.dialog_id, frame.user_id, frame.seq);
      if (frame.user_id === this.state.me?.id) this.readOnAnotherDevice(frame.dialog_id, frame.seq);
      this.renderDialogs();
    } else if (frame.type === "typing") {
      if (frame.user_id !== this.state.me?.id && this.state.dialogs.has(frame.dialog_id)) this.showTyping(frame.dialog_id);
    }
  }

  /** Read up to `seq` on another device: what lies at or below it is no longer unread here. */
  readOnAnotherDevice(dialogId, seq) {
    const summary = this.state.dialogs.get(dialogId);
    if (summary && summary.last && summary.last.seq <= seq) summary.unread = 0;
  }

  /** "<peer> is typing…" under the open dialog's name, for a few seconds after each event. */
  showTyping(dialogId) {
    clearTimeout(this.typingTimer);
    this.typingIn = dialogId;
    if (dialogId) this.typingTimer = setTimeout(() => this.showTyping(null), TYPING_SHOW_MS);
    this.renderTyping();
  }

  renderTyping() {
    const summary = this.typingIn && this.typingIn === this.state.openId && this.state.dialogs.get(this.typingIn);
    this.ui.typing.textContent = summary ? `${summary.peer.username} is typing…` : "";
    this.ui.typing.hidden = !summary;
  }

  /** The user types in the open dialog: tell the peer, at most once every TYPING_SEND_MS. */
  typing() {
    const id = this.state.openId;
    const now = Date.now();
    if (!id || !this.ready || !this.connection.open || now - this.typingSentAt < TYPING_SEND_MS) return;
    this.typingSentAt = now;
    this.connection.request({ type: "typing", dialog_id: id }).catch((error) => console.warn("typing failed", error));
  }

  /** A message from `sent`, a push, `sync` or `history`: held once, shown if its dialog is open. */
  receive(message, { live }) {
    const id = message.dialog_id;
    const open = id === this.state.openId && document.visibilityState === "visible";
    const mine = message.sender.id === this.state.me.id;
    const unread = live && !open && !mine;
    if (live && !mine && this.typingIn === id) this.showTyping(null); // the message it was
    if (!this.state.noteMessage(message, { live, unread })) {
      // A dialog someone else just opened with us: list it, then note the message in it.
      this.refreshDialogs(true)
        .then(() => {
          this.state.noteMessage(message, { live, unread });
          this.renderDialogs();
        })
        .catch((error) => console.warn("listing dialogs failed", error));
    }
    const held = this.state.messages.get(id);
    if (!held || !(held.loaded || held.fetching)) return; // its newest page comes when it is opened
    const added = held.add([message]);
    if (id === this.state.openId) {
      this.messageList.insert(added, { follow: live || mine });
      this.markRead();
    }
    if (live && held.hasGap()) this.catchUp().catch((error) => console.warn("sync after a gap failed", error));
  }

  async openByUsername(username) {
    const reply = await this.connection.request({ type: "open_dialog", username });
    const known = this.state.dialogs.has(reply.dialog.id);
    this.state.mergeDialogs([reply.dialog]);
    if (!known) this.state.toFront(this.state.dialogs.get(reply.dialog.id));
    await this.openDialog(reply.dialog.id);
    if (!known) this.refreshQuietly(); // `dialog` says nothing of presence: `dialogs` does
  }

  async openDialog(id) {
    const summary = this.state.dialogs.get(id);
    const switching = this.state.openId !== id;
    this.state.openId = id;
    sessionStorage.setItem(OPEN_KEY, id);
    document.body.classList.add("dialog-open");
    this.ui.peerName.textContent = summary.peer.username;
    this.ui.text.disabled = false;
    this.ui.send.disabled = false;
    this.renderTyping();
    const held = this.state.messagesOf(id);
    if (switching || this.messageList.empty) {
      this.messageList.show(held.sorted(), this.outbox.pendingIn(id));
      this.ui.olderState.textContent = "";
    }
    this.markRead();
    if (!held.loaded && !held.fetching) {
      held.fetching = true;
      let reply;
      try {
        reply = await this.connection.request({ type: "history", dialog_id: id, limit: PAGE });
      } finally {
        held.fetching = false;
      }
      held.loaded = true;
      if (reply.messages.length < PAGE) held.atStart = true;
      for (const message of reply.messages) this.state.noteMessage(message, { live: false, unread: false });
      const added = held.add(reply.messages);
      if (id !== this.state.openId) return; // another dialog was opened meanwhile
      this.messageList.insert(added, { follow: true });
      this.markRead();
      // Messages that came live while the page was fetched: held now, so sync anything missing.
      if (held.hasGap()) await this.catchUp();
    }
    this.messageList.scrollToBottom();
    this.renderDialogs();
  }

  /** Scrolled near the top: fetch the page before the oldest message held. */
  async loadOlder() {
    const id = this.state.openId;
    const held = id && this.state.messages.get(id);
    if (!held || !held.loaded || held.atStart || held.lo === null || this.loadingOlder || !this.ready) return;
    this.loadingOlder = true;
    this.ui.olderState.textContent = "Loading older messages…";
    try {
      const reply = await this.connection.request({ type: "history", dialog_id: id, before_seq: held.lo, limit: PAGE });
      if (reply.messages.length < PAGE) held.atStart = true;
      if (id === this.state.openId) this.messageList.insert(held.add(reply.messages), { follow: false });
      this.ui.olderState.textContent = held.atStart ? "The start of this dialog" : "";
    } catch (error) {
      this.ui.olderState.textContent = `Could not load older messages: ${error.message}`;
    } finally {
      this.loadingOlder = false;
    }
  }

  send(text) {
    const id = this.state.openId;
    if (!id) return;
    this.messageList.addPending(this.outbox.add(id, text));
  }

  sent(item, message) {
    this.messageList.removePending(item);
    this.receive(message, { live: false });
    if (message.dialog_id === this.state.openId) this.messageList.scrollToBottom();
    this.renderDialogs();
  }

  failed(item, error) {
    this.messageList.pendingChanged(item, error);
  }

  pendingChanged(item) {
    this.messageList.pendingChanged(item);
  }

  /** The open dialog is on screen: its messages are read; `read` up to the highest seq shown. */
  markRead() {
    const id = this.state.openId;
    const summary = this.state.dialogs.get(id);
    if (!summary || document.visibilityState !== "visible") return;
    if (summary.unread > 0) {
      summary.unread = 0;
      this.renderDialogs();
    }
    const held = this.state.messages.get(id);
    const seq = held && held.bySeq.size > 0 ? Math.max(...held.bySeq.keys()) : 0;
    const mine = summary.reads[String(this.state.me.id)] || 0;
    if (seq <= Math.max(mine, this.readSent.get(id) || 0) || !this.ready || !this.connection.open) return;
    this.readSent.set(id, seq);
    this.connection.request({ type: "read", dialog_id: id, seq }).then(
      (reply) => this.state.noteRead(reply.dialog_id, reply.user_id, reply.seq),
      (error) => {
        if (this.readSent.get(id) === seq) this.readSent.delete(id); // tried again at the next chance
        console.warn("marking read failed", error);
      },
    );
  }

  /** Back to the list (phone width): the dialog is no longer being read. */
  closeDialog() {
    document.body.classList.remove("dialog-open");
    this.state.openId = null;
    sessionStorage.removeItem(OPEN_KEY);
    this.renderDialogs();
  }

  renderDialogs() {
    const me = this.state.me;
    if (!me) return;
    const entries = this.state.orderedDialogs().map((summary) =>
      dialogItem(summary, { current: summary.id === this.state.openId, myId: me.id }),
    );
    // Rebuilt on every change: keep the keyboard's place in it.
    const active = document.activeElement;
    const focused = this.ui.dialogList.contains(active) ? active.dataset.dialogId : null;
    this.ui.dialogList.replaceChildren(...entries);
    if (focused) this.ui.dialogList.querySelector(`[data-dialog-id="${CSS.escape(focused)}"]`)?.focus();
    this.ui.noDialogs.hidden = entries.length > 0;
    const open = this.state.dialogs.get(this.state.openId);
    if (open) {
      this.ui.peerName.textContent = open.peer.username;
      this.messageList.showReadMark(this.state.peerRead(open.id));
    }
    this.renderTyping();
  }
}
