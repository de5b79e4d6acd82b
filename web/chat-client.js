// A client of chatd's protocol v2 (docs/protocol.md) for one chat between "me" and
// a peer. It keeps the WebSocket open (reconnecting with backoff and resuming from
// the last seq it has), holds the conversation's state — the messages by seq, the
// outbox of sends not yet acknowledged, read marks, presence, typing — and reports
// every change as an event. It touches no DOM: chat.js renders the page from these
// events, and another frontend can take this file as it is.
//
// What it relies on, from the protocol:
// - a chat has one order, seq 1, 2, 3, …, the same for everyone (a client is not
//   shown every seq: another user's block, a store's filler);
// - an ack, or a delivery, comes only after the message is stored;
// - a send retried with the same client_id is stored once and answered with the
//   first send's ack (`duplicate: true`);
// - reconnecting with `?after=<highest seq seen>` replays every later message,
//   in order, once, before the live ones;
// - an edit, a delete, an erasure or a block takes a seq of that same order, and
//   comes as a frame of its own (`edited`, `deleted`, `erased`, `blocked`), so the
//   highest seq seen counts those too, and a resume brings the changes made while
//   away to messages held already.
// So the client never loses or doubles a message by keying everything on seq, and
// resends whatever was not acknowledged, under the same client_id, after each
// reconnect. It sends one message at a time (the next once the last is acked), so
// the chat keeps the order the user wrote in even when a send must be retried.
// Edits and deletes of one's own messages go the same way through a queue of
// their own (#changes): one at a time, each under its client_id, again after a
// reconnect or a pause until acked, so the last edit written is the one that stays.
//
//   const client = new ChatClient({me: 'alice', peer: 'bob'});
//   client.addEventListener('messages', (e) => render(e.detail.messages));
//   client.start();
//   client.send('hi bob');
//   client.editMessage(40, 'hi bob!');   client.deleteMessage(40);
//   client.setBlocking(true);            // block the peer (false: unblock)
//
// Events (each a CustomEvent; the payload is in `event.detail`):
//   state     {state, kind?, code?, reason?, retryInMs?}  the connection changed:
//             'connecting', 'open', 'waiting' (for a retry), 'stopped' (for good:
//             stop(), or a close that retrying cannot cure, see classifyClose)
//   hello     {hello}                       a connection was opened (the hello frame)
//   messages  {messages, older}             messages not seen before, oldest first;
//             `older`: a page of history older than everything held so far
//   history   {hasOlder}                    whether older messages can be loaded
//   pending   {entry}                       a send was queued: {clientId, text, createdAt}
//   ack       {clientId, message, duplicate}  a send was stored as `message`
//   failed    {clientId, code, message}     a send was refused for good (too long, …)
//   typing    {typing}                      the peer started or stopped typing
//   presence  {online, devices}             the peer's connections to this chat
//   read      {peerReadSeq}                 the peer has read up to this seq
//   notice    {code, message}               an error frame that needs no other action
//   reset     {}                            the messages held were dropped (the server's
//             chat ends before them: its store was replaced); the newest page follows
//   changed   {messages}                    messages held were edited or deleted (by
//             anyone: an `edited`, `deleted` or `erased` frame, or the ack of my own
//             change); each is the held object in its new state: `text`, `edited_ts`
//             (the last edit's time), `deleted: true` (a tombstone, text '')
//   change-pending {change, message}        an edit or delete of mine was queued:
//             change is {clientId, action: 'edit'|'delete', seq, text?}
//   change-done    {change, message, duplicate}  it was stored (and applied: `changed`)
//   change-failed  {change, message, code, reason}  it was refused for good (code: the
//             error's, e.g. not_your_message, message_deleted, edit_window_passed, blocked)
//   block     {blocking, blockedByPeer, pending}  who blocks whom changed: `blocking`, I
//             block the peer; `blockedByPeer`, the peer blocks me (my sends and edits
//             are refused); `pending`, my block or unblock is on its way

export const SUBPROTOCOL = 'chat.v2';

// Reconnect backoff: 0.5 s doubling up to 10 s, each delay between half and all
// of that ("equal jitter"), so the clients of a restarted server do not return
// in one wave, yet none retries in a tight loop.
const RECONNECT_INITIAL_MS = 500;
const RECONNECT_MAX_MS = 10_000;
// After a 4429 (too many connections or messages), coming back at once would
// only be refused again.
const LIMITED_MIN_DELAY_MS = 5_000;
// A connection that has not said hello by then is given up and retried.
const CONNECT_TIMEOUT_MS = 10_000;
// Heartbeat. A browser may take minutes to notice that the network went away
// under a quiet WebSocket, so after PING_AFTER_MS without a frame the client
// pings, and it takes the connection for dead when nothing arrives within
// PONG_TIMEOUT_MS.
const PING_AFTER_MS = 20_000;
const PONG_TIMEOUT_MS = 10_000;
// Typing. chatd relays at most 2 typing frames a second per connection (bursts
// of 5) and drops the rest, so frames are at least TYPING_MIN_GAP_MS apart.
// "typing: true" is repeated every TYPING_REFRESH_MS while the user types, and
// the peer's indicator lapses after PEER_TYPING_EXPIRES_MS without one, in case
// the "false" was lost with a connection.
const TYPING_MIN_GAP_MS = 600;
const TYPING_REFRESH_MS = 3_000;
const TYPING_IDLE_MS = 3_000;
const PEER_TYPING_EXPIRES_MS = 6_000;
// Read receipts count against the message rate: one frame at most this often,
// carrying the highest seq read meanwhile.
const READ_MIN_GAP_MS = 500;
// After a rate_limited error, sending pauses this long (doubling, up to the
// maximum, while the errors go on).
const RATE_PAUSE_MS = 1_000;
const RATE_PAUSE_MAX_MS = 8_000;
// After store_unavailable or overloaded, the send is tried again this much later.
const STORE_RETRY_MS = 2_000;

// Error codes that refuse one send for good: sending it again cannot succeed.
const REFUSED_SENDS = new Set(['invalid_text', 'empty_text', 'text_too_long', 'invalid_client_id', 'blocked']);
// Error codes that refuse one edit or delete for good.
const REFUSED_CHANGES = new Set([...REFUSED_SENDS, 'invalid_target', 'message_not_found',
  'not_your_message', 'message_deleted', 'edit_window_passed']);
// Error codes after which the same send (same client_id) is tried again later.
const RETRIED_SENDS = new Set(['store_unavailable', 'overloaded']);

/**
 * What a WebSocket close code means to the client (docs/protocol.md, "Close codes").
 * A `permanent` close needs the user to change something — a name, a token —
 * before another attempt can succeed; the others are retried with backoff.
 */
export function classifyClose(code, reason = '') {
  switch (code) {
    case 4400:
      return {kind: 'invalid_user', permanent: true};
    case 4401:
      return {kind: /expired/.test(reason) ? 'token_expired' : 'unauthorized', permanent: true};
    case 4403:
      return {kind: 'forbidden', permanent: true};
    case 4404:
      // The reason names the user: "unknown user: carol".
      return {kind: 'unknown_user', permanent: true, user: reason.replace(/^unknown user:\s*/, '')};
    case 1013:
      return {kind: 'unavailable', permanent: false};
    case 4429:
      return {kind: 'limited', permanent: false};
    case 1008:
      return {kind: 'too_slow', permanent: false};
    case 1009:
      return {kind: 'too_large', permanent: false};
    case 1001:
      return {kind: 'server_restart', permanent: false};
    default:
      // 1006 and the like: the network went away, the server is down, or it
      // refused the handshake (a browser is not told why).
      return {kind: 'network', permanent: false};
  }
}

/** A client_id: 128 random bits in hex (crypto.randomUUID needs a secure context). */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** WebSocket subprotocol names are RFC 7230 tokens; a JWT always is one. */
const SUBPROTOCOL_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class ChatClient extends EventTarget {
  // ---- state a renderer may read (and must not change)
  me;
  peer;
  /**
   * Every message held, by seq, in its current state (`edited_ts` once edited,
   * `deleted: true` and an empty text once deleted).
   * @type {Map<number, {id: string, seq: number, sender: string, text: string, ts: string,
   *   edited_ts?: string, deleted?: boolean}>}
   */
  messages = new Map();
  /** Sends not acknowledged yet, in the order they were made. */
  outbox = new Map();
  /** Edits and deletes of mine not acknowledged yet, in the order they were made. */
  changes = new Map();
  /** I block the peer. */
  blocking = false;
  /** The peer blocks me: my sends and edits are refused. */
  blockedByPeer = false;
  state = 'idle';
  hasOlder = false;
  peerOnline = false;
  peerDevices = 0;
  peerTyping = false;
  peerReadSeq = 0;
  myReadSeq = 0;

  // ---- private
  #token;
  #baseUrl;
  #storage;
  #ws = null;
  #connectionCount = 0; // numbers the connections, so stale events can be told apart
  #attempt = 0; // reconnects since the last hello, for the backoff
  #synced = false; // the first history arrived: from now on, reconnects resume
  #lastSeq = 0;
  #oldestSeq = 0;
  #olderInFlight = false;
  #timers = new Map(); // name -> timeout id; every timer of the client, see #later
  #ratePauseUntil = 0;
  #rateStrikes = 0;
  #typingWish = false;
  #typingSent = false;
  #typingSentAt = 0;
  #readWanted = 0;
  #readSentAt = 0;
  #outboxRestored = false;
  // The head of the outbox went out on an earlier connection (or page) and its ack
  // never came: it may be stored already, and then the replay brings it as a
  // message of mine. Until its ack says which seq it is, my replayed messages are
  // held back, so it is never shown twice.
  #unsureClientId = null;
  #heldBack = [];
  // seq of a message -> seq of the last change applied to it: a change is applied
  // once, and never over a later one (a duplicate ack, a replayed frame).
  #changeSeqs = new Map();
  // A block (true) or unblock (false) sent and not answered yet, or null.
  #blockWish = null;

  /**
   * @param {object} options
   * @param {string} options.me       the connecting user (user1 of the path)
   * @param {string} options.peer     the other user
   * @param {string} [options.token]  a JWT when the server has SECRET_KEY set
   * @param {string} [options.baseUrl] where chatd is (default: this page's origin)
   * @param {Storage|null} [options.storage] keeps the outbox across reloads
   */
  constructor({me, peer, token = '', baseUrl = globalThis.location?.href, storage = null}) {
    super();
    this.me = me;
    this.peer = peer;
    this.#token = token;
    this.#baseUrl = baseUrl;
    this.#storage = storage;
  }

  /** Highest seq held: what a reconnect resumes after. */
  get lastSeq() {
    return this.#lastSeq;
  }

  /** Lowest seq held: where the next older page ends. */
  get oldestSeq() {
    return this.#oldestSeq;
  }

  // -------------------------------------------------------------------------
  // Public API
  // -------------------------------------------------------------------------

  /** Opens the connection, and keeps it open until stop() or a permanent close. */
  start() {
    if (this.state !== 'idle' && this.state !== 'stopped') return;
    this.#restoreOutbox();
    this.#attempt = 0;
    this.#connect();
  }

  /** Closes the connection for good. Unacknowledged sends stay in the stored outbox. */
  stop() {
    this.#clearTimers();
    this.#dropSocket(1000, 'bye');
    this.#setPeerTyping(false);
    this.#setState('stopped', {kind: 'stopped'});
  }

  /** While waiting to reconnect: try now (the page calls this when the network is back). */
  reconnectNow() {
    if (this.state !== 'waiting') return;
    this.#cancel('reconnect');
    this.#connect();
  }

  /**
   * Queues a message and sends it as soon as the connection is open and the ones
   * before it are acknowledged. It stays in the outbox, and is sent again after
   * every reconnect under the same client_id, until its ack arrives.
   */
  send(text) {
    const entry = {clientId: newClientId(), text, createdAt: new Date().toISOString()};
    this.outbox.set(entry.clientId, entry);
    this.#saveOutbox();
    this.#emit('pending', {entry});
    this.setTyping(false);
    this.#pump();
    return entry;
  }

  /**
   * Replaces the text of my message `seq`. Queued like a send: it goes as soon as
   * the connection is open and the changes before it are acknowledged, again
   * after a reconnect under the same client_id until its ack (or a refusal)
   * comes. Returns the change, or null when `seq` is not a message of mine that
   * can be edited (not held, not mine, or deleted) or `text` is empty.
   */
  editMessage(seq, text) {
    const message = this.messages.get(seq);
    if (!this.#changeable(message) || typeof text !== 'string' || text === '') return null;
    return this.#queueChange({clientId: newClientId(), action: 'edit', seq, text});
  }

  /** Deletes my message `seq` (it becomes a tombstone); as editMessage. */
  deleteMessage(seq) {
    const message = this.messages.get(seq);
    if (!this.#changeable(message)) return null;
    return this.#queueChange({clientId: newClientId(), action: 'delete', seq});
  }

  /**
   * Blocks (true) or unblocks (false) the peer. Answered by the server's `blocked`
   * frame, which sets `blocking` (event `block`); sent again after a reconnect
   * until then.
   */
  setBlocking(block) {
    block = block === true;
    if (this.#blockWish === null && block === this.blocking) return;
    this.#blockWish = block;
    this.#emitBlock();
    this.#sendBlockWish();
  }

  /**
   * Opens a new connection at once (a resume): its hello says again who blocks
   * whom. The page offers it to a user the peer blocked, who is told nothing
   * live when the block ends.
   */
  recheck() {
    if (this.state === 'waiting') {
      this.reconnectNow();
    } else if (this.state === 'open') {
      this.#dropSocket(1000, 'checking again');
      this.#connectionGone();
      this.#connect();
    }
  }

  /**
   * Asks for the page of history before the oldest message held. Answered by a
   * `messages` event with `older: true` and a `history` event. Returns false when
   * there is nothing to ask (no older messages, not connected, or already asked).
   */
  loadOlder() {
    if (!this.#isOpen() || !this.#synced || !this.hasOlder || this.#olderInFlight) return false;
    this.#olderInFlight = true;
    // No limit: the server's HISTORY_LIMIT, the page size of the first history.
    this.#sendFrame({type: 'history', before: this.#oldestSeq});
    return true;
  }

  /** The user is typing (true) or stopped (false). Call it on every keystroke. */
  setTyping(active) {
    this.#cancel('typingIdle');
    if (active) this.#later('typingIdle', TYPING_IDLE_MS, () => this.#wantTyping(false));
    this.#wantTyping(active);
  }

  /** The user has seen every message up to `seq` (the page calls this when they are on screen). */
  markRead(seq) {
    if (seq <= this.myReadSeq || seq <= this.#readWanted) return;
    this.#readWanted = seq;
    this.#flushRead();
  }

  // -------------------------------------------------------------------------
  // The connection
  // -------------------------------------------------------------------------

  #url() {
    const url = new URL(
      `/ws/${encodeURIComponent(this.me)}/${encodeURIComponent(this.peer)}`,
      this.#baseUrl,
    );
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    // Resume: every message after the last one held, and nothing before it.
    if (this.#synced) url.searchParams.set('after', String(this.#lastSeq));
    // A browser cannot set an Authorization header on a WebSocket; the token goes
    // as a subprotocol, or in the query when it could not be one.
    if (this.#token && !SUBPROTOCOL_TOKEN.test(this.#token)) {
      url.searchParams.set('token', this.#token);
    }
    return url.href;
  }

  #protocols() {
    const protocols = [SUBPROTOCOL];
    if (this.#token && SUBPROTOCOL_TOKEN.test(this.#token)) protocols.push(`bearer.${this.#token}`);
    return protocols;
  }

  #connect() {
    this.#setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.#url(), this.#protocols());
    } catch (error) {
      // A URL or subprotocol the browser refuses; nothing a retry would change.
      this.#setState('stopped', {kind: 'invalid_user', reason: String(error.message ?? error)});
      return;
    }
    const number = ++this.#connectionCount;
    this.#ws = ws;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      if (ws.protocol !== SUBPROTOCOL) {
        // A server that does not speak v2 answered (chatd always does).
        this.#dropSocket(1000, 'protocol v2 needed');
        this.#setState('stopped', {kind: 'unsupported_server'});
      }
    };
    ws.onmessage = (event) => {
      if (ws !== this.#ws) return;
      this.#armHeartbeat();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to repair; the protocol only sends JSON objects
      }
      if (frame && typeof frame === 'object') this.#onFrame(frame);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      this.#socketGone(event.code, event.reason);
    };
    ws.onerror = () => {}; // a close event always follows, with what there is to know
    this.#later('connect', CONNECT_TIMEOUT_MS, () => {
      if (ws === this.#ws && number === this.#connectionCount) this.#abandon();
    });
  }

  /** The socket is dead (no pong, no hello in time): do not wait for the browser to agree. */
  #abandon() {
    this.#dropSocket(4000, 'unresponsive');
    this.#socketGone(1006, '');
  }

  /** Detaches and closes the current socket, if any; its late events are ignored. */
  #dropSocket(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  /** The connection ended with `code`: retry after a backoff, or stop for good. */
  #socketGone(code, reason) {
    this.#connectionGone();
    // Close 1009: the frame was larger than the server takes. It was the send on
    // its way (the only one); sending it again would close the next connection too.
    const head = this.#head();
    if (code === 1009 && head?.sentOn === this.#connectionCount) {
      this.#refuse(head, 'too_large', 'the message is larger than the server accepts');
    }
    const close = classifyClose(code, reason);
    const detail = {kind: close.kind, code, reason, user: close.user};
    if (close.permanent) {
      this.#setState('stopped', detail);
      return;
    }
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** this.#attempt);
    let delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    if (close.kind === 'limited') delay = Math.max(delay, LIMITED_MIN_DELAY_MS);
    this.#attempt += 1;
    this.#later('reconnect', delay, () => this.#connect());
    this.#setState('waiting', {...detail, retryInMs: Math.round(delay)});
  }

  /** What a connection's end resets, whatever ended it. */
  #connectionGone() {
    this.#ws = null;
    for (const name of ['connect', 'ping', 'pongTimeout', 'typing', 'read', 'rateResume', 'storeRetry']) {
      this.#cancel(name);
    }
    this.#olderInFlight = false;
    this.#typingSent = false;
    this.#setPeerTyping(false);
  }

  #armHeartbeat() {
    this.#cancel('pongTimeout');
    this.#later('ping', PING_AFTER_MS, () => {
      this.#sendFrame({type: 'ping'});
      this.#later('pongTimeout', PONG_TIMEOUT_MS, () => this.#abandon());
    });
  }

  #isOpen() {
    return this.state === 'open' && this.#ws?.readyState === WebSocket.OPEN;
  }

  #sendFrame(frame) {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  // -------------------------------------------------------------------------
  // Frames from the server
  // -------------------------------------------------------------------------

  #onFrame(frame) {
    switch (frame.type) {
      case 'hello':
        return this.#onHello(frame);
      case 'history':
        return this.#onHistory(frame);
      case 'message':
        return this.#onMessage(frame);
      case 'ack':
        return this.#onAck(frame);
      case 'error':
        return this.#onError(frame);
      case 'typing':
        if (frame.user === this.peer) this.#setPeerTyping(frame.typing === true);
        return;
      case 'presence':
        if (frame.user === this.peer) this.#setPresence(frame.online === true, frame.devices ?? 0);
        return;
      case 'read':
        return this.#onRead(frame);
      case 'edited':
      case 'deleted':
        return this.#onChangeFrame(frame);
      case 'erased':
        return this.#onErased(frame);
      case 'blocked':
        return this.#onBlocked(frame);
      default:
        // 'pong', and frames a later version may add: clients ignore what they do not know.
        return;
    }
  }

  #onHello(hello) {
    this.#cancel('connect');
    // The server's word on who is who: with a token, "me" is the token's subject.
    this.me = hello.me ?? this.me;
    this.peer = hello.peer ?? this.peer;
    if (this.#synced && (hello.last_seq ?? 0) < this.#lastSeq) {
      this.#startOver();
      return;
    }
    this.#attempt = 0;
    this.#setState('open');
    this.#emit('hello', {hello});
    this.#setPresence(hello.peer_online === true, hello.peer_devices ?? 0);
    this.myReadSeq = Math.max(this.myReadSeq, hello.my_read_seq ?? 0);
    this.#updatePeerRead(hello.peer_read_seq ?? 0);
    this.blocking = hello.blocking === true;
    this.blockedByPeer = hello.blocked === true;
    if (this.#blockWish === this.blocking) this.#blockWish = null;
    this.#emitBlock();
    this.#sendBlockWish();
    // Whatever was not acknowledged goes again, with its client_id: what the
    // server stored already is answered with the first ack, not stored twice.
    const head = this.#head();
    this.#unsureClientId = head?.sentOn !== undefined ? head.clientId : null;
    this.#pump();
    this.#pumpChanges();
    this.#flushRead();
  }

  /**
   * The server's chat ends before the last message held: its store was restored
   * from an older backup, or replaced. The seqs held may now name other messages,
   * so they are dropped, and the client connects again as the first time (not on
   * this connection: it was opened to resume after a seq the chat does not have
   * yet, and chatd would not deliver the messages up to that seq).
   */
  #startOver() {
    this.messages.clear();
    // The seqs they name may be other messages now.
    this.changes.clear();
    this.#changeSeqs.clear();
    this.#lastSeq = 0;
    this.#oldestSeq = 0;
    this.#synced = false;
    this.hasOlder = false;
    this.#heldBack = [];
    this.peerReadSeq = 0;
    this.myReadSeq = 0;
    this.#readWanted = 0;
    this.#emit('reset', {});
    this.#dropSocket(1000, 'starting over');
    this.#cancel('connect');
    this.#connect();
  }

  #onHistory(frame) {
    const requested = this.#olderInFlight;
    this.#olderInFlight = false;
    const oldestBefore = this.#oldestSeq;
    const fresh = this.#remember(frame.messages);
    const older = this.#synced && fresh.length > 0 && fresh[fresh.length - 1].seq < oldestBefore;
    // has_more speaks of messages older than this page; it matters for the first
    // history and for the pages asked for, not for a stray answer.
    if (!this.#synced || requested || older) this.hasOlder = frame.has_more === true;
    this.#synced = true;
    this.#publish(fresh, older);
    this.#emit('history', {hasOlder: this.hasOlder});
  }

  #onMessage(frame) {
    this.#publish(this.#remember([frame]), false);
    if (frame.sender === this.peer) this.#setPeerTyping(false);
  }

  #onAck(ack) {
    const change = this.changes.get(ack.client_id);
    if (change) {
      this.#onChangeAck(change, ack);
      return;
    }
    const entry = this.outbox.get(ack.client_id);
    if (!entry) return; // acked before (a resend's second answer)
    this.outbox.delete(entry.clientId);
    this.#saveOutbox();
    this.#rateStrikes = 0;
    // The replay after a reconnect may have brought the message already, when the
    // ack was lost with the previous connection; then it is that one.
    let message = this.messages.get(ack.seq);
    if (!message) {
      message = {type: 'message', id: ack.id, seq: ack.seq, sender: this.me, text: entry.text, ts: ack.ts};
      this.#remember([message]);
    }
    this.#emit('ack', {clientId: entry.clientId, message, duplicate: ack.duplicate === true});
    this.#settle(entry.clientId, ack.seq);
    this.#pump();
  }

  #onRead(frame) {
    if (frame.user === this.peer) {
      this.#updatePeerRead(frame.seq);
    } else if (frame.user === this.me) {
      // Another device of mine (or this one) read up to there.
      this.myReadSeq = Math.max(this.myReadSeq, frame.seq);
    }
  }

  #onError(frame) {
    // Refused because the peer blocks me: whatever it was, that is news.
    if (frame.code === 'blocked' && !this.blockedByPeer) {
      this.blockedByPeer = true;
      this.#emitBlock();
    }
    const change = frame.client_id ? this.changes.get(frame.client_id) : undefined;
    if (change) {
      this.#onChangeError(change, frame);
      return;
    }
    const entry = frame.client_id ? this.outbox.get(frame.client_id) : undefined;
    if (entry && REFUSED_SENDS.has(frame.code)) {
      this.#refuse(entry, frame.code, frame.message);
      return;
    }
    if (frame.code === 'blocked') return; // told by the `block` event
    if (frame.code === 'rate_limited') {
      // The error does not say which frame it refused; everything sent before it
      // and not acknowledged goes again after a pause (idempotent, so nothing
      // that did get through is stored twice).
      this.#olderInFlight = false;
      this.#pauseSends();
    } else if (entry && RETRIED_SENDS.has(frame.code)) {
      this.#later('storeRetry', STORE_RETRY_MS, () => {
        this.#resendHead();
        this.#resendChange();
      });
    } else if (frame.code === 'invalid_history') {
      this.#olderInFlight = false;
    }
    // shutting_down needs nothing: the close follows, and the outbox is sent
    // again after the reconnect.
    this.#emit('notice', {code: frame.code, message: frame.message});
  }

  // -------------------------------------------------------------------------
  // The conversation's state
  // -------------------------------------------------------------------------

  /** Reports new messages, holding mine back while the head's fate is unknown. */
  #publish(fresh, older) {
    let shown = fresh;
    if (this.#unsureClientId && !older) {
      shown = fresh.filter((message) => message.sender !== this.me);
      this.#heldBack.push(...fresh.filter((message) => message.sender === this.me));
    }
    if (shown.length > 0) this.#emit('messages', {messages: shown, older});
  }

  /** The unsure head was acked as `seq` (or refused): what was held back is shown, but it. */
  #settle(clientId, seq) {
    if (clientId !== this.#unsureClientId) return;
    this.#unsureClientId = null;
    const held = this.#heldBack.filter((message) => message.seq !== seq);
    this.#heldBack = [];
    if (held.length > 0) this.#emit('messages', {messages: held, older: false});
  }

  /** Adds the messages not held yet (by seq); returns them, oldest first. */
  #remember(list) {
    const fresh = [];
    for (const message of Array.isArray(list) ? list : []) {
      if (!Number.isInteger(message?.seq) || this.messages.has(message.seq)) continue;
      this.messages.set(message.seq, message);
      fresh.push(message);
      this.#lastSeq = Math.max(this.#lastSeq, message.seq);
      this.#oldestSeq = this.#oldestSeq === 0 ? message.seq : Math.min(this.#oldestSeq, message.seq);
    }
    return fresh.sort((a, b) => a.seq - b.seq);
  }

  /** The seq of a frame of the chat's order: the resume cursor moves past it. */
  #advance(seq) {
    if (Number.isInteger(seq)) this.#lastSeq = Math.max(this.#lastSeq, seq);
  }

  /**
   * Applies change `changeSeq` to the message `seq` held, with `apply(message)`;
   * true when it did. A change to a message not held is ignored (a history read
   * brings that message in its current state); one not newer than the last
   * applied to it is old news; a tombstone stays one.
   */
  #applyChange(seq, changeSeq, apply) {
    const message = this.messages.get(seq);
    if (!message || message.deleted === true) return false;
    if (Number.isInteger(changeSeq)) {
      if (changeSeq <= (this.#changeSeqs.get(seq) ?? 0)) return false;
      this.#changeSeqs.set(seq, changeSeq);
    }
    apply(message);
    return true;
  }

  static #edit(text, ts) {
    return (message) => {
      message.text = text;
      message.edited_ts = ts;
    };
  }

  static #tombstone(message) {
    message.deleted = true;
    message.text = '';
    delete message.edited_ts;
  }

  /** `edited` or `deleted` from the server: another connection changed a message. */
  #onChangeFrame(frame) {
    this.#advance(frame.seq);
    const message = this.messages.get(frame.target);
    // The id must agree with the message held under that seq, when both are known.
    if (message && frame.id && message.id && frame.id !== message.id) return;
    // An edit's text is never empty (empty_text), but an erased one is: replayed
    // after an operator's erasure, an `edited` has text "" and the `erased` follows.
    if (frame.type === 'edited' && (typeof frame.text !== 'string' || frame.text === '')) return;
    const apply = frame.type === 'edited' ? ChatClient.#edit(frame.text, frame.ts) : ChatClient.#tombstone;
    if (this.#applyChange(frame.target, frame.seq, apply)) this.#emit('changed', {messages: [message]});
  }

  /** `erased`: every message `user` sent before the frame's seq is a tombstone. */
  #onErased(frame) {
    this.#advance(frame.seq);
    const changed = [];
    for (const message of this.messages.values()) {
      if (message.sender !== frame.user || !(message.seq < frame.seq)) continue;
      if (this.#applyChange(message.seq, frame.seq, ChatClient.#tombstone)) changed.push(message);
    }
    changed.sort((a, b) => a.seq - b.seq);
    if (changed.length > 0) this.#emit('changed', {messages: changed});
  }

  /**
   * `blocked`: I blocked or unblocked the peer (from this connection or another
   * of mine). The peer is not told live; should one reach me in a replay about
   * the peer blocking me, it says the same as the hello's `blocked`.
   */
  #onBlocked(frame) {
    this.#advance(frame.seq);
    const blocked = frame.blocked === true;
    if (frame.user === this.me) {
      this.blocking = blocked;
      if (this.#blockWish === blocked) this.#blockWish = null;
    } else if (frame.user === this.peer) {
      this.blockedByPeer = blocked;
    } else {
      return;
    }
    this.#emitBlock();
  }

  #emitBlock() {
    this.#emit('block', {blocking: this.blocking, blockedByPeer: this.blockedByPeer, pending: this.#blockWish !== null});
  }

  #updatePeerRead(seq) {
    if (!Number.isInteger(seq) || seq <= this.peerReadSeq) return;
    this.peerReadSeq = seq;
    this.#emit('read', {peerReadSeq: seq});
  }

  #setPresence(online, devices) {
    this.peerOnline = online;
    this.peerDevices = devices;
    if (!online) this.#setPeerTyping(false);
    this.#emit('presence', {online, devices});
  }

  #setPeerTyping(typing) {
    this.#cancel('peerTyping');
    if (typing) this.#later('peerTyping', PEER_TYPING_EXPIRES_MS, () => this.#setPeerTyping(false));
    if (typing === this.peerTyping) return;
    this.peerTyping = typing;
    this.#emit('typing', {typing});
  }

  #setState(state, detail = {}) {
    this.state = state;
    this.#emit('state', {state, ...detail});
  }

  // -------------------------------------------------------------------------
  // Sending
  // -------------------------------------------------------------------------

  /** The oldest send not acknowledged: the one on its way, or the next to go. */
  #head() {
    return this.outbox.values().next().value;
  }

  /**
   * Sends the head of the outbox unless it is on its way already. One send at a
   * time: the next goes when this one is acked (a commit takes milliseconds), so
   * a retried send can never land after one written later.
   */
  #pump() {
    const head = this.#head();
    if (head && head.sentOn !== this.#connectionCount) this.#transmit(head);
  }

  /** Sends the head again on this connection (after a pause or a store error). */
  #resendHead() {
    const head = this.#head();
    if (head) this.#transmit(head);
  }

  #transmit(entry) {
    if (!this.#isOpen() || Date.now() < this.#ratePauseUntil) return; // the hello or the pause's end sends it
    if (this.#sendFrame({type: 'send', client_id: entry.clientId, text: entry.text})) {
      entry.sentOn = this.#connectionCount;
    }
  }

  #refuse(entry, code, message) {
    this.outbox.delete(entry.clientId);
    this.#saveOutbox();
    this.#emit('failed', {clientId: entry.clientId, code, message});
    this.#settle(entry.clientId, undefined);
    this.#pump();
  }

  #pauseSends() {
    const pause = Math.min(RATE_PAUSE_MAX_MS, RATE_PAUSE_MS * 2 ** this.#rateStrikes);
    this.#rateStrikes += 1;
    this.#ratePauseUntil = Date.now() + pause;
    // The refused frame may have been the send, the change or the block on its
    // way: they go again (an ack, if it did get through, is simply the first one
    // again; blocking twice changes nothing).
    this.#later('rateResume', pause, () => {
      this.#resendHead();
      this.#resendChange();
      this.#sendBlockWish();
    });
  }

  /** A message of mine that is stored and not deleted: it may be edited or deleted. */
  #changeable(message) {
    return message !== undefined && message.sender === this.me && message.deleted !== true;
  }

  #queueChange(change) {
    this.changes.set(change.clientId, change);
    this.#emit('change-pending', {change, message: this.messages.get(change.seq)});
    this.#pumpChanges();
    return change;
  }

  /** As #pump for the changes: the head goes unless it is on its way already. */
  #pumpChanges() {
    const head = this.changes.values().next().value;
    if (head && head.sentOn !== this.#connectionCount) this.#transmitChange(head);
  }

  #resendChange() {
    const head = this.changes.values().next().value;
    if (head) this.#transmitChange(head);
  }

  #transmitChange(change) {
    if (!this.#isOpen() || Date.now() < this.#ratePauseUntil) return;
    const frame = change.action === 'edit'
      ? {type: 'edit', client_id: change.clientId, seq: change.seq, text: change.text}
      : {type: 'delete', client_id: change.clientId, seq: change.seq};
    if (this.#sendFrame(frame)) change.sentOn = this.#connectionCount;
  }

  /**
   * My edit or delete was stored as change `ack.seq`. Not taken as the resume
   * cursor: the ack may overtake frames of lower seqs still on their way, and a
   * replayed change of mine is simply not applied twice.
   */
  #onChangeAck(change, ack) {
    this.changes.delete(change.clientId);
    this.#rateStrikes = 0;
    const message = this.messages.get(change.seq);
    const apply = change.action === 'edit' ? ChatClient.#edit(change.text, ack.ts) : ChatClient.#tombstone;
    if (this.#applyChange(change.seq, ack.seq, apply)) this.#emit('changed', {messages: [message]});
    this.#emit('change-done', {change, message, duplicate: ack.duplicate === true});
    this.#pumpChanges();
  }

  #onChangeError(change, frame) {
    if (REFUSED_CHANGES.has(frame.code)) {
      this.changes.delete(change.clientId);
      this.#emit('change-failed', {change, message: this.messages.get(change.seq), code: frame.code,
        reason: frame.message});
      this.#pumpChanges();
    } else if (frame.code === 'rate_limited') {
      this.#pauseSends();
      this.#emit('notice', {code: frame.code, message: frame.message});
    } else if (RETRIED_SENDS.has(frame.code)) {
      this.#later('storeRetry', STORE_RETRY_MS, () => {
        this.#resendHead();
        this.#resendChange();
      });
      this.#emit('notice', {code: frame.code, message: frame.message});
    } else {
      // shutting_down: it goes again after the reconnect.
      this.#emit('notice', {code: frame.code, message: frame.message});
    }
  }

  #sendBlockWish() {
    if (this.#blockWish === null || !this.#isOpen() || Date.now() < this.#ratePauseUntil) return;
    this.#sendFrame({type: this.#blockWish ? 'block' : 'unblock'});
  }

  #wantTyping(value) {
    this.#typingWish = value;
    if (this.#timers.has('typing')) return; // the pending send will read the wish
    const wait = this.#typingSentAt + TYPING_MIN_GAP_MS - Date.now();
    if (wait > 0) this.#later('typing', wait, () => this.#applyTypingWish());
    else this.#applyTypingWish();
  }

  #applyTypingWish() {
    const wish = this.#typingWish;
    const due = wish
      ? !this.#typingSent || Date.now() - this.#typingSentAt >= TYPING_REFRESH_MS
      : this.#typingSent;
    if (!due || !this.#isOpen()) return;
    this.#sendFrame({type: 'typing', typing: wish});
    this.#typingSent = wish;
    this.#typingSentAt = Date.now();
  }

  #flushRead() {
    if (this.#timers.has('read') || this.#readWanted <= this.myReadSeq) return;
    const wait = this.#readSentAt + READ_MIN_GAP_MS - Date.now();
    if (wait > 0) {
      this.#later('read', wait, () => this.#flushRead());
      return;
    }
    if (!this.#isOpen()) return; // sent after the next hello
    this.#sendFrame({type: 'read', seq: this.#readWanted});
    this.myReadSeq = this.#readWanted;
    this.#readSentAt = Date.now();
  }

  // -------------------------------------------------------------------------
  // The outbox across reloads
  // -------------------------------------------------------------------------

  #outboxKey() {
    return `chatd.outbox:${this.me}:${this.peer}`;
  }

  #restoreOutbox() {
    if (this.#outboxRestored || !this.#storage) return;
    this.#outboxRestored = true;
    let saved = [];
    try {
      saved = JSON.parse(this.#storage.getItem(this.#outboxKey()) ?? '[]');
    } catch {
      // unreadable: start empty
    }
    for (const {clientId, text, createdAt} of Array.isArray(saved) ? saved : []) {
      if (typeof clientId !== 'string' || typeof text !== 'string' || this.outbox.has(clientId)) continue;
      // sentOn 0: it may have gone out from an earlier page, whose ack is lost.
      const entry = {clientId, text, createdAt, sentOn: 0};
      this.outbox.set(clientId, entry);
      this.#emit('pending', {entry});
    }
  }

  #saveOutbox() {
    if (!this.#storage) return;
    const entries = [...this.outbox.values()].map(({clientId, text, createdAt}) => ({clientId, text, createdAt}));
    try {
      if (entries.length === 0) this.#storage.removeItem(this.#outboxKey());
      else this.#storage.setItem(this.#outboxKey(), JSON.stringify(entries));
    } catch {
      // storage full or refused: the outbox still lives as long as the page
    }
  }

  // -------------------------------------------------------------------------
  // Timers and events
  // -------------------------------------------------------------------------

  /** Runs `fn` after `ms` under `name`, replacing a timer of that name. */
  #later(name, ms, fn) {
    this.#cancel(name);
    this.#timers.set(
      name,
      setTimeout(() => {
        this.#timers.delete(name);
        fn();
      }, ms),
    );
  }

  #cancel(name) {
    clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }

  #clearTimers() {
    for (const id of this.#timers.values()) clearTimeout(id);
    this.#timers.clear();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }
}
