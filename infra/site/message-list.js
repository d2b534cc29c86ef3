// The open dialog's messages on screen: in seq order, messages still being sent after them,
// and the reader's place kept when older ones are put above.

import { element, messageItem, pendingItem, pendingLabel } from "./view.js";

const NEAR_TOP_PX = 120;
const NEAR_BOTTOM_PX = 120;

export class MessageList {
  /** @param {HTMLOListElement} list  @param {() => number} myId  @param {() => void} onNearTop */
  constructor(list, myId, onNearTop) {
    this.list = list;
    this.myId = myId;
    this.readSeq = 0; // the peer's read mark in the dialog shown
    list.addEventListener("scroll", () => {
      if (list.scrollTop < NEAR_TOP_PX) onNearTop();
    });
  }

  /** Show this dialog: its held messages, then what waits to be sent in it. */
  show(messages, pending) {
    this.readSeq = 0;
    this.list.replaceChildren(...messages.map((message) => this.node(message)), ...pending.map(pendingItem));
  }

  clear() {
    this.readSeq = 0;
    this.list.replaceChildren();
  }

  /** "read" under the last own message at or below the peer's read mark `seq`. */
  showReadMark(seq) {
    this.readSeq = seq;
    const mine = [...this.list.querySelectorAll(".message.mine[data-seq]")].filter(
      (node) => Number(node.dataset.seq) <= seq,
    );
    const target = mine[mine.length - 1];
    const current = this.list.querySelector("[data-testid=read-mark]");
    if (current && current.parentElement === target) return;
    current?.remove();
    if (target) target.append(element("span", { "data-testid": "read-mark", className: "read-mark", text: "read" }));
  }

  get empty() {
    return this.list.childElementCount === 0;
  }

  node(message) {
    return messageItem(message, message.sender.id === this.myId());
  }

  /**
   * Insert messages in seq order, before any still pending. Newer ones keep the view at the
   * bottom when the reader was there (`follow`); older ones above leave the reader in place.
   */
  insert(messages, { follow }) {
    if (messages.length === 0) return;
    const list = this.list;
    const fromBottom = list.scrollHeight - list.scrollTop;
    const atBottom = fromBottom - list.clientHeight < NEAR_BOTTOM_PX;
    for (const message of messages) {
      const later = [...list.children].find(
        (node) => node.dataset.seq === undefined || Number(node.dataset.seq) > message.seq,
      );
      list.insertBefore(this.node(message), later || null);
    }
    this.showReadMark(this.readSeq);
    if (follow && atBottom) this.scrollToBottom();
    else list.scrollTop = list.scrollHeight - fromBottom;
  }

  addPending(item) {
    this.list.append(pendingItem(item));
    this.scrollToBottom();
  }

  pendingNode(item) {
    return [...this.list.querySelectorAll("[data-client-msg-id]")].find(
      (node) => node.dataset.clientMsgId === item.clientMsgId,
    );
  }

  removePending(item) {
    this.pendingNode(item)?.remove();
  }

  pendingChanged(item, failure = null) {
    const node = this.pendingNode(item);
    if (!node) return;
    if (failure) node.classList.add("failed");
    node.querySelector(".status").textContent = failure ? `not sent: ${failure.message}` : pendingLabel(item.state);
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}
