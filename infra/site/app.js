// The page: connection state, logging in and out, renaming, and the forms that drive the chat.

import { Chat } from "./chat.js";
import { Connection, ConnectionLost, RequestError, socketUrl } from "./connection.js";

const TOKEN_KEY = "chat.token";
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const MAX_TEXT = 4096; // the server's default CHAT_MAX_TEXT_LENGTH; it answers `invalid` past its own

const $ = (id) => document.getElementById(id);
const ui = {
  state: document.querySelector("[data-testid=connection-state]"),
  account: $("account"), meName: $("me-name"), logout: $("logout"),
  authView: $("auth-view"), authForm: $("auth-form"), authError: $("auth-error"),
  username: $("auth-username"), email: $("auth-email"), password: $("auth-password"), register: $("register"),
  chatView: $("chat-view"), openForm: $("open-form"), peerUsername: $("peer-username"),
  sidebarError: $("sidebar-error"), dialogList: $("dialog-list"),
  noDialogs: $("no-dialogs"), renameForm: $("rename-form"), renameUsername: $("rename-username"),
  back: $("back"), peerName: $("peer-name"), typing: $("typing"), olderState: $("older-state"), messageList: $("message-list"),
  composer: $("composer"), composerError: $("composer-error"), text: $("text"), send: $("send"),
};

let countdown = null;

function showState(state, text) {
  clearInterval(countdown);
  ui.state.dataset.state = state;
  ui.state.textContent = text;
}

function showReconnecting(delayMs) {
  const until = Date.now() + delayMs;
  const tick = () => {
    const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    ui.state.textContent = seconds > 0 ? `Disconnected: reconnecting in ${seconds} s` : "Disconnected: reconnecting…";
  };
  showState("offline", "");
  tick();
  countdown = setInterval(tick, 1000);
}

const describe = (error) => (error instanceof ConnectionLost ? "not connected: try again in a moment" : error.message);

const connection = new Connection(socketUrl(location), { onOpen: opened, onClose: closed, onPush: pushed });
const chat = new Chat(connection, ui);

async function opened() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    connection.settled();
    showState("connected", "Connected: not logged in");
    showAuth();
    return;
  }
  showState("connecting", "Logging in…");
  try {
    await loggedIn(await connection.request({ type: "auth", token }));
  } catch (error) {
    if (error instanceof RequestError && error.code === "bad_token") {
      localStorage.removeItem(TOKEN_KEY);
      showState("connected", "Connected: not logged in");
      showAuth("Your session has ended: log in again.");
    } else if (!(error instanceof ConnectionLost)) {
      console.warn("resuming the session failed; trying a fresh connection", error);
      connection.reopen();
    }
  }
}

function closed(retryInMs) {
  chat.suspend();
  showReconnecting(retryInMs);
}

function pushed(frame) {
  if (frame.type === "renamed") showMe(frame.user);
  else if (frame.type === "logged_out") loggedOut("Logged out from another window.");
  else chat.onPush(frame);
}

/** The session is over (here or from elsewhere): forget it and show the login view. */
function loggedOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  chat.stop();
  connection.stop();
  showAuth(message);
  ui.username.focus();
  connection.start();
}

/** `logged_in` from `login` or `auth`: keep the fresh token, then catch up. */
async function loggedIn(reply) {
  localStorage.setItem(TOKEN_KEY, reply.token);
  chat.start(reply.user);
  showMe(reply.user);
  showChat();
  showState("connecting", "Catching up…");
  try {
    await chat.resume();
    showState("online", "Connected");
    connection.settled();
  } catch (error) {
    if (error instanceof ConnectionLost) return; // `closed` shows it and reconnects
    console.warn("catching up failed; trying a fresh connection", error);
    connection.reopen();
  }
}

function showMe(user) {
  if (chat.state.me) chat.state.me.username = user.username;
  ui.meName.textContent = user.username;
  if (document.activeElement !== ui.renameUsername) ui.renameUsername.value = user.username;
}

function showAuth(message = "") {
  ui.chatView.hidden = true;
  ui.account.hidden = true;
  ui.authView.hidden = false;
  ui.authError.textContent = message;
}

function showChat() {
  ui.authView.hidden = true;
  ui.chatView.hidden = false;
  ui.account.hidden = false;
  ui.password.value = "";
}

function credentials(forRegister) {
  const username = ui.username.value.trim();
  const password = ui.password.value;
  const email = ui.email.value.trim();
  if (!USERNAME.test(username)) return "Username: 3 to 32 letters, digits, '_', '.' or '-'.";
  if (password.length < 8) return "Password: 8 characters or more.";
  if (forRegister && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) return "Email: an address like name@example.org.";
  return { username, password, email };
}

async function logIn(forRegister) {
  const given = credentials(forRegister);
  if (typeof given === "string") {
    ui.authError.textContent = given;
    return;
  }
  ui.authError.textContent = forRegister ? "Creating your account…" : "Logging in…";
  try {
    if (forRegister) await connection.request({ type: "register", ...given });
    await loggedIn(await connection.request({ type: "login", username: given.username, password: given.password }));
  } catch (error) {
    ui.authError.textContent = describe(error);
  }
}

ui.authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  logIn(false);
});
ui.register.addEventListener("click", () => logIn(true));

const LOGOUT_WAIT_MS = 3000;

ui.logout.addEventListener("click", async () => {
  // `logout` ends the session on the server (its token is refused from then on); the token is
  // forgotten here whether or not the reply comes.
  ui.logout.disabled = true;
  try {
    await connection.request({ type: "logout" }, LOGOUT_WAIT_MS);
  } catch (error) {
    console.warn("logout got no reply; forgetting the session here anyway", error);
  } finally {
    ui.logout.disabled = false;
  }
  loggedOut("Logged out.");
});

ui.renameForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = ui.renameUsername.value.trim();
  if (!USERNAME.test(username)) {
    ui.sidebarError.textContent = "Username: 3 to 32 letters, digits, '_', '.' or '-'.";
    return;
  }
  try {
    const reply = await connection.request({ type: "rename", username });
    ui.renameUsername.blur();
    showMe(reply.user);
    ui.sidebarError.textContent = "";
  } catch (error) {
    ui.sidebarError.textContent = describe(error);
  }
});

ui.openForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = ui.peerUsername.value.trim();
  if (!username) return;
  try {
    await chat.openByUsername(username);
    ui.peerUsername.value = "";
    ui.sidebarError.textContent = "";
    ui.text.focus();
  } catch (error) {
    ui.sidebarError.textContent = describe(error);
  }
});

ui.dialogList.addEventListener("click", (event) => {
  const entry = event.target.closest("[data-testid=dialog]");
  if (!entry) return;
  chat.openDialog(entry.dataset.dialogId).then(
    () => ui.text.focus(),
    (error) => {
      ui.sidebarError.textContent = describe(error);
    },
  );
});

ui.back.addEventListener("click", () => chat.closeDialog());

function fitText() {
  ui.text.style.height = "auto";
  ui.text.style.height = `${Math.min(ui.text.scrollHeight, 160)}px`;
}

ui.text.addEventListener("input", () => {
  fitText();
  if (ui.text.value.trim()) chat.typing();
});
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  if (text.length > MAX_TEXT) {
    ui.composerError.textContent = `A message holds at most ${MAX_TEXT} characters; this one has ${text.length}.`;
    return;
  }
  ui.composerError.textContent = "";
  chat.send(text);
  ui.text.value = "";
  fitText();
});

connection.start();
