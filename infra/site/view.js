// DOM builders. Every piece of data goes in through textContent or an attribute, never as
// markup: a message `<img src=x onerror=alert(1)>` shows as those characters.

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const sameDay = (a, b) => a.toDateString() === b.toDateString();

/** "14:03" today, "3 Dec, 14:03" on another day, in the reader's time zone and language. */
export function shortTime(iso, now = new Date()) {
  const date = new Date(iso);
  const time = { hour: "2-digit", minute: "2-digit" };
  if (sameDay(date, now)) return date.toLocaleTimeString([], time);
  return date.toLocaleString([], { day: "numeric", month: "short", ...time });
}

export function messageItem(message, mine) {
  const sentAt = new Date(message.sent_at);
  return element(
    "li",
    { "data-testid": "message", "data-seq": String(message.seq), className: mine ? "message mine" : "message theirs" },
    element("p", { className: "text", text: message.text }),
    element("time", { datetime: message.sent_at, title: sentAt.toLocaleString(), text: shortTime(message.sent_at) }),
  );
}

const PENDING_LABELS = { waiting: "waiting for the connection", sending: "sending…", retrying: "sending again…" };

export function pendingItem(item) {
  const status = element("span", { className: "status", text: PENDING_LABELS[item.state] || item.state });
  const node = element(
    "li",
    { "data-testid": "pending-message", "data-client-msg-id": item.clientMsgId, className: "message mine pending" },
    element("p", { className: "text", text: item.text }),
    status,
  );
  return node;
}

export function pendingLabel(state) {
  return PENDING_LABELS[state] || state;
}

/** One entry of the dialog list: peer with online dot, last message, its time, unread count. */
export function dialogItem(summary, { current, myId }) {
  const peer = element("span", { className: "peer", text: summary.peer.username });
  if (summary.online !== undefined) {
    const presence = summary.online ? "online" : "offline";
    peer.prepend(element("span", {
      "data-testid": "online", "data-online": String(summary.online), className: `dot ${presence}`,
      role: "img", "aria-label": presence,
    }));
  }
  let preview = "";
  if (summary.last) preview = (summary.last.sender.id === myId ? "You: " : "") + summary.last.text;
  const button = element(
    "button",
    { type: "button", "data-testid": "dialog", "data-dialog-id": summary.id, className: "dialog-entry" },
    peer,
    element("span", { className: "last", text: preview }),
  );
  if (summary.last) {
    const at = summary.last.sent_at;
    button.append(element("time", { datetime: at, text: shortTime(at) }));
  }
  if (summary.unread > 0) {
    const count = String(summary.unread);
    button.append(element("span", { "data-testid": "unread", className: "unread", "aria-label": `${count} unread`, text: count }));
  }
  if (current) button.setAttribute("aria-current", "true");
  return element("li", {}, button);
}
