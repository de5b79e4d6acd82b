// The chat page: a form to pick who you are and whom you talk to, then one
// conversation. The protocol is in chat-client.js (ChatClient, no DOM); this file
// renders its state and turns what the user does into its calls:
//
//   settings     the form's values: from the URL, else the last ones (localStorage)
//   texts        what the user is told about closes and errors
//   ChatView     the DOM of one conversation (messages, states, edits and tombstones,
//                the edit and delete controls, typing, presence)
//   ChatPage     the form, the alert, blocking, and the wiring between ChatClient and ChatView
//
// Message text is only ever set with textContent, never parsed as HTML.

import {ChatClient} from './chat-client.js';

const byId = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

const SETTINGS_KEY = 'chatd.settings';

function storedSettings() {
  try {
    const value = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? '{}');
    return value && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}

function saveSettings({me, peer, token}) {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify({me, peer, token}));
  } catch {
    // private mode or full: the page works without it
  }
}

/** `me`, `peer` and `token` from the link: `/?me=alice&peer=bob` or `/#me=alice&peer=bob&token=…`. */
function settingsFromUrl() {
  const query = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  const pick = (name) => hash.get(name) ?? query.get(name) ?? undefined;
  return {me: pick('me'), peer: pick('peer'), token: pick('token')};
}

/** The address bar names the chat (so a reload reopens it), and never holds the token. */
function showChatInUrl(me, peer) {
  const url = new URL(location.href);
  url.search = new URLSearchParams({me, peer}).toString();
  url.hash = '';
  history.replaceState(null, '', url);
}

/** What chatd refuses with 4400, checked before connecting (README, "Close codes"). */
function nameProblem(name) {
  if (name === '') return 'Enter a name.';
  if (new TextEncoder().encode(name).length > 64) return 'A name has at most 64 bytes.';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'A name cannot hold control characters.';
  return null;
}

// ---------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------

/** Why the chat stopped for good (a permanent close, see classifyClose). */
function describeStop({kind, reason, user}, me) {
  switch (kind) {
    case 'unknown_user':
      return user === me
        ? `There is no user “${user}”. Check your name.`
        : `The user “${user}” does not exist. Check the name and try again.`;
    case 'invalid_user':
      return `That name is not valid${reason ? ` (${reason})` : ''}.`;
    case 'unauthorized':
      return `Please sign in: this server needs a valid token${reason ? ` (${reason})` : ''}. Paste one in the Token field.`;
    case 'token_expired':
      return 'Your sign-in has expired. Paste a new token to go on.';
    case 'forbidden':
      return `This token is not for this chat: it must be a token of “${me}”.`;
    case 'unsupported_server':
      return 'This server does not speak chatd protocol v2.';
    default:
      return `The connection was closed${reason ? `: ${reason}` : ''}.`;
  }
}

/** Why the connection is down for now, and when it is tried again (`retryInMs` null: now). */
function describeWait({kind, reason, retryInMs}) {
  const when = retryInMs == null
    ? 'Reconnecting…'
    : `Reconnecting in ${Math.max(1, Math.round(retryInMs / 1000))} s…`;
  switch (kind) {
    case 'unavailable':
      return `The chat service is unavailable right now${reason ? ` (${reason})` : ''}. ${when}`;
    case 'limited':
      return `Too many connections or messages; the server asked to slow down. ${when}`;
    case 'server_restart':
      return `The server is restarting. ${when}`;
    case 'too_slow':
      return `The connection fell behind and was reset. ${when}`;
    case 'too_large':
      return `A message was larger than the server accepts; it was not sent. ${when}`;
    default:
      return `Connection lost. ${when}`;
  }
}

/** An error frame the user should hear about. */
function describeNotice(code, message) {
  switch (code) {
    case 'rate_limited':
      return 'You are sending faster than the server allows; your messages go out in a moment.';
    case 'store_unavailable':
    case 'overloaded':
      return 'The server could not store a message yet; it will be sent again shortly.';
    case 'shutting_down':
      return 'The server is restarting; your message will be sent once reconnected.';
    default:
      return `The server refused a request: ${message ?? code}.`;
  }
}

/** Why a message was refused for good; shown beside it. */
function describeFailure(code, peer) {
  switch (code) {
    case 'text_too_long':
    case 'too_large':
      return 'Not sent: the message is too long';
    case 'empty_text':
      return 'Not sent: the message is empty';
    case 'blocked':
      return `Not sent: ${peer} has blocked you`;
    default:
      return 'Not sent';
  }
}

/** Why an edit or a delete of mine was refused (nothing was changed). */
function describeChangeFailure(code, action, peer, reason) {
  const done = action === 'edit' ? 'edited' : 'deleted';
  switch (code) {
    case 'not_your_message':
      return `Only your own messages can be ${done}.`;
    case 'message_not_found':
      return `That message is no longer there, so it was not ${done}.`;
    case 'message_deleted':
      return action === 'edit' ? 'That message was deleted, so it cannot be edited.' : 'That message was deleted already.';
    case 'edit_window_passed':
      return 'That message is too old to edit now. You can still delete it.';
    case 'blocked':
      return `${peer} has blocked you: your message was not ${done}.`;
    case 'empty_text':
      return 'A message cannot be empty. Delete it instead.';
    case 'text_too_long':
      return 'Not saved: the new text is too long.';
    default:
      return `The message was not ${done}${reason ? ` (${reason})` : ''}.`;
  }
}

const STATE_LABELS = {sending: 'Sending…', sent: 'Sent', read: 'Read'};

function formatTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return '';
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})
    : date.toLocaleString([], {month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'});
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A small button of a message's controls; what it does is in data-action. */
function actionButton(text, action, label) {
  const button = element('button', 'action', text);
  button.type = 'button';
  button.dataset.action = action;
  if (label) button.setAttribute('aria-label', label);
  return button;
}

const TOMBSTONE_TEXT = 'message deleted';

// ---------------------------------------------------------------------------
// ChatView: the DOM of one conversation
// ---------------------------------------------------------------------------

/** How close to the bottom (px) still counts as "at the newest message". */
const NEAR_BOTTOM_PX = 48;
/** How close to the top (px) loads the page of older messages. */
const NEAR_TOP_PX = 48;

class ChatView {
  #me = '';
  #peer = '';
  #bySeq = new Map(); // seq -> <li>
  #byClientId = new Map(); // client_id -> <li> of a send not acknowledged
  #pending = new Map(); // seq -> the last edit or delete of mine on its way for it
  #peerReadSeq = 0;
  #hasOlder = false;
  #loadingOlder = false;
  #handlers;

  /**
   * @param {object} handlers what the message controls ask for
   * @param {(seq: number, text: string) => void} handlers.edit
   * @param {(seq: number) => void} handlers.remove
   * @param {() => void} handlers.focusAway  focus to put somewhere sensible (the composer)
   */
  constructor(handlers) {
    this.#handlers = handlers;
    this.log = byId('log');
    this.list = byId('messages');
    this.title = byId('chat-title');
    this.presence = byId('presence');
    this.typing = byId('typing');
    this.jump = byId('jump');
    this.loadOlderButton = byId('load-older');
    this.historyState = byId('history-state');
    this.list.addEventListener('click', (event) => this.#onControl(event));
    this.list.addEventListener('keydown', (event) => this.#onControlKey(event));
  }

  reset(me, peer) {
    this.#me = me;
    this.#peer = peer;
    this.#bySeq.clear();
    this.#byClientId.clear();
    this.#pending.clear();
    this.#peerReadSeq = 0;
    this.#hasOlder = false;
    this.#loadingOlder = false;
    this.list.replaceChildren();
    this.title.textContent = peer;
    this.list.setAttribute('aria-label', `Messages with ${peer}`);
    this.setPresence(null);
    this.setTyping(false);
    this.jump.hidden = true;
    this.historyState.textContent = 'Loading…';
    this.loadOlderButton.hidden = true;
  }

  setNames(me, peer) {
    this.#me = me;
    this.#peer = peer;
    this.title.textContent = peer;
  }

  /** Messages from the server, oldest first; `older`: a page above everything shown. */
  addMessages(messages, older) {
    if (older) {
      this.#prependOlder(messages);
      return;
    }
    const wasAtBottom = this.#nearBottom() || this.#bySeq.size === 0;
    let mineAdded = false;
    for (const message of messages) {
      if (this.#bySeq.has(message.seq)) continue;
      const li = this.#messageItem(message);
      this.#insertBySeq(li, message.seq);
      mineAdded ||= message.sender === this.#me;
    }
    this.#updateHistoryEdge();
    if (wasAtBottom || mineAdded) this.scrollToBottom();
    else this.jump.hidden = false;
  }

  /** A send queued, shown as "sending" below the stored messages until its ack. */
  addPending(entry) {
    const li = this.#messageItem({sender: this.#me, text: entry.text, ts: entry.createdAt});
    li.dataset.clientId = entry.clientId;
    this.#setItemState(li, 'sending');
    this.#byClientId.set(entry.clientId, li);
    this.list.append(li);
    this.#updateHistoryEdge();
    this.scrollToBottom();
  }

  /** The send `clientId` was stored as `message`. */
  acknowledge(clientId, message) {
    const li = this.#byClientId.get(clientId);
    this.#byClientId.delete(clientId);
    if (!li) return;
    if (this.#bySeq.has(message.seq)) {
      // The replay after a reconnect showed it already (its first ack was lost).
      li.remove();
      return;
    }
    li.remove();
    li.dataset.seq = String(message.seq);
    const time = li.querySelector('time.ts');
    time.dateTime = message.ts;
    time.textContent = formatTime(message.ts);
    time.title = new Date(message.ts).toLocaleString();
    this.#bySeq.set(message.seq, li);
    this.#insertBySeq(li, message.seq);
    this.#setItemState(li, message.seq <= this.#peerReadSeq ? 'read' : 'sent');
    this.#render(li, message); // now it can be edited and deleted
  }

  /** Messages were edited or deleted: those shown are drawn in their new state, in place. */
  applyChanges(messages) {
    for (const message of messages) {
      const li = this.#bySeq.get(message.seq);
      if (li) this.#render(li, message);
    }
  }

  /** An edit of mine is on its way (its text is shown, "Saving…"), or a delete ("Deleting…"). */
  setPendingChange(change, message) {
    this.#pending.set(change.seq, change);
    const li = this.#bySeq.get(change.seq);
    if (li && message) this.#render(li, message);
  }

  /** That change was stored or refused: the message shows what the server holds. */
  clearPendingChange(change, message) {
    if (this.#pending.get(change.seq) === change) this.#pending.delete(change.seq);
    const li = this.#bySeq.get(change.seq);
    if (li && message) this.#render(li, message);
  }

  fail(clientId, code) {
    const li = this.#byClientId.get(clientId);
    this.#byClientId.delete(clientId);
    if (!li) return;
    li.dataset.state = 'failed';
    li.querySelector('.state').textContent = describeFailure(code, this.#peer);
  }

  /** The peer has read up to `seq`: every own message up to there shows "read". */
  setPeerRead(seq) {
    this.#peerReadSeq = Math.max(this.#peerReadSeq, seq);
    for (const li of this.list.querySelectorAll('li.mine[data-state="sent"]')) {
      if (Number(li.dataset.seq) <= this.#peerReadSeq) this.#setItemState(li, 'read');
    }
  }

  /** true / false, or null while not connected (unknown). */
  setPresence(online) {
    this.presence.dataset.online = online === null ? 'unknown' : String(online);
    this.presence.textContent = online === null ? 'connecting…' : online ? 'online' : 'offline';
  }

  setTyping(typing) {
    this.typing.textContent = typing ? `${this.#peer} is typing…` : '';
  }

  setHasOlder(hasOlder) {
    this.#hasOlder = hasOlder;
    this.#loadingOlder = false;
    this.#updateHistoryEdge();
  }

  setLoadingOlder() {
    this.#loadingOlder = true;
    this.#updateHistoryEdge();
  }

  /** Whether the user is at the top and older messages should come. */
  wantsOlder() {
    if (!this.#hasOlder || this.#loadingOlder) return false;
    // At the top, or nothing to scroll yet: either way the user cannot go further up.
    return this.log.scrollTop <= NEAR_TOP_PX || this.log.scrollHeight <= this.log.clientHeight;
  }

  /** The highest seq of the peer's messages on screen or scrolled past: what was read. */
  highestSeenPeerSeq() {
    const bottom = this.log.getBoundingClientRect().bottom;
    for (let li = this.list.lastElementChild; li; li = li.previousElementSibling) {
      if (!li.classList.contains('theirs')) continue;
      if (li.getBoundingClientRect().top < bottom) return Number(li.dataset.seq);
    }
    return 0;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
    this.jump.hidden = true;
  }

  onScroll() {
    if (this.#nearBottom()) this.jump.hidden = true;
  }

  #nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight <= NEAR_BOTTOM_PX;
  }

  #prependOlder(messages) {
    // Keep what the user looks at in place: the distance from the bottom does
    // not change when content is added above.
    const fromBottom = this.log.scrollHeight - this.log.scrollTop;
    const fragment = document.createDocumentFragment();
    for (const message of messages) {
      if (!this.#bySeq.has(message.seq)) fragment.append(this.#messageItem(message));
    }
    this.list.prepend(fragment);
    this.log.scrollTop = this.log.scrollHeight - fromBottom;
  }

  /** Places a stored message by seq; sends not acknowledged stay below all of them. */
  #insertBySeq(li, seq) {
    let next = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      const nodeSeq = node.dataset.seq === undefined ? Infinity : Number(node.dataset.seq);
      if (nodeSeq < seq) break;
      next = node;
    }
    this.list.insertBefore(li, next);
  }

  #messageItem(message) {
    const mine = message.sender === this.#me;
    const li = element('li', `message ${mine ? 'mine' : 'theirs'}`);
    // Read out as "You: hi" / "bob: hi" in the log; the bubbles' sides say it to the eye.
    li.append(element('span', 'visually-hidden', mine ? 'You: ' : `${message.sender}: `));
    li.append(element('p', 'text', message.text));
    const meta = element('p', 'meta');
    const time = element('time', 'ts', formatTime(message.ts));
    time.dateTime = message.ts ?? '';
    if (message.ts) time.title = new Date(message.ts).toLocaleString();
    meta.append(time);
    if (mine) meta.append(element('span', 'change-state'), element('span', 'state'));
    li.append(meta);
    if (message.seq !== undefined) {
      li.dataset.seq = String(message.seq);
      this.#bySeq.set(message.seq, li);
      if (mine) this.#setItemState(li, message.seq <= this.#peerReadSeq ? 'read' : 'sent');
      this.#render(li, message);
    }
    return li;
  }

  /**
   * Draws a stored message's state: its text (or the pending edit's), the
   * "edited" mark with the edit's time as its title, the tombstone, and the Edit
   * and Delete controls of my messages.
   */
  #render(li, message) {
    const deleted = message.deleted === true;
    const pending = this.#pending.get(message.seq);
    li.classList.toggle('deleted', deleted);
    li.querySelector('.text').textContent = deleted
      ? TOMBSTONE_TEXT
      : pending?.action === 'edit' ? pending.text : message.text;

    let mark = li.querySelector('.edited');
    if (!deleted && message.edited_ts) {
      if (!mark) {
        mark = element('time', 'edited', 'edited');
        li.querySelector('time.ts').before(mark);
      }
      mark.dateTime = message.edited_ts;
      mark.title = `Edited ${new Date(message.edited_ts).toLocaleString()}`;
    } else {
      mark?.remove();
    }

    const mine = li.classList.contains('mine');
    if (mine && !deleted) {
      if (!li.querySelector('.actions')) {
        const actions = element('span', 'actions');
        actions.append(actionButton('Edit', 'edit', 'Edit message'),
          actionButton('Delete', 'delete', 'Delete message'));
        li.querySelector('.meta').prepend(actions);
      }
    } else {
      this.#dropControls(li);
    }
    if (mine) {
      const busy = pending ? (pending.action === 'edit' ? 'saving' : 'deleting') : null;
      if (busy) li.dataset.change = busy;
      else delete li.dataset.change;
      li.querySelector('.change-state').textContent = busy === 'saving' ? 'Saving…' : busy ? 'Deleting…' : '';
    }
  }

  // ---- the controls of my messages: Edit (in place), Delete (after a confirmation)

  #onControl(event) {
    const button = event.target.closest('button[data-action]');
    const li = button?.closest('li.message');
    if (!li || li.dataset.seq === undefined) return;
    const seq = Number(li.dataset.seq);
    switch (button.dataset.action) {
      case 'edit':
        return this.#openEditor(li);
      case 'save':
        return this.#saveEditor(li);
      case 'cancel-edit':
        return this.#closeEditor(li, true);
      case 'delete':
        return this.#askDelete(li);
      case 'confirm-delete':
        this.#closeConfirm(li, false);
        this.#handlers.remove(seq);
        this.#handlers.focusAway();
        return;
      case 'cancel-delete':
        return this.#closeConfirm(li, true);
    }
  }

  #onControlKey(event) {
    const li = event.target.closest?.('li.message');
    if (!li) return;
    if (event.target.classList.contains('edit-field')) {
      // As in the composer: Enter saves, Shift+Enter is a new line; Escape cancels.
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#saveEditor(li);
      } else if (event.key === 'Escape') {
        event.preventDefault();
        this.#closeEditor(li, true);
      }
    } else if (event.key === 'Escape' && event.target.closest('.confirm')) {
      event.preventDefault();
      this.#closeConfirm(li, true);
    }
  }

  #openEditor(li) {
    this.#closeConfirm(li, false);
    let field = li.querySelector('.edit-field');
    if (!field) {
      const text = li.querySelector('.text');
      field = element('textarea', 'edit-field');
      field.value = text.textContent;
      field.rows = Math.min(6, field.value.split('\n').length);
      field.setAttribute('aria-label', 'Edit message');
      field.setAttribute('aria-describedby', 'edit-help');
      const bar = element('span', 'edit-bar');
      bar.append(actionButton('Save', 'save'), actionButton('Cancel', 'cancel-edit'));
      const editor = element('div', 'editor');
      editor.append(field, bar);
      text.hidden = true;
      text.after(editor);
      li.classList.add('editing');
    }
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }

  #saveEditor(li) {
    const field = li.querySelector('.edit-field');
    if (!field) return;
    const text = field.value.trim();
    if (text === '') {
      field.setAttribute('aria-invalid', 'true');
      field.placeholder = 'A message cannot be empty';
      return;
    }
    const unchanged = text === li.querySelector('.text').textContent;
    this.#closeEditor(li, true);
    if (!unchanged) this.#handlers.edit(Number(li.dataset.seq), text);
  }

  /** Closes the editor, the text as it was; focus back on Edit when asked or when it was inside. */
  #closeEditor(li, focus) {
    const editor = li.querySelector('.editor');
    if (!editor) return;
    const hadFocus = editor.contains(document.activeElement);
    editor.remove();
    li.querySelector('.text').hidden = false;
    li.classList.remove('editing');
    if (focus || hadFocus) this.#focusControl(li, 'edit');
  }

  #askDelete(li) {
    this.#closeEditor(li, false);
    const actions = li.querySelector('.actions');
    if (!actions || li.querySelector('.confirm')) return;
    const confirm = element('span', 'confirm');
    confirm.append(element('span', 'confirm-text', 'Delete this message?'),
      actionButton('Yes, delete', 'confirm-delete'), actionButton('Cancel', 'cancel-delete'));
    actions.after(confirm);
    actions.hidden = true;
    li.classList.add('confirming');
    confirm.querySelector('[data-action="confirm-delete"]').focus();
  }

  #closeConfirm(li, focus) {
    const confirm = li.querySelector('.confirm');
    if (!confirm) return;
    const hadFocus = confirm.contains(document.activeElement);
    confirm.remove();
    li.classList.remove('confirming');
    const actions = li.querySelector('.actions');
    if (actions) actions.hidden = false;
    if (focus || hadFocus) this.#focusControl(li, 'delete');
  }

  /** The message can no longer be changed (deleted): its controls go, and focus with them. */
  #dropControls(li) {
    const controls = li.querySelectorAll('.actions, .confirm, .editor');
    if (controls.length === 0) return;
    const hadFocus = [...controls].some((node) => node.contains(document.activeElement));
    for (const node of controls) node.remove();
    li.querySelector('.text').hidden = false;
    li.classList.remove('editing', 'confirming');
    if (hadFocus) this.#handlers.focusAway();
  }

  #focusControl(li, action) {
    const button = li.querySelector(`.actions button[data-action="${action}"]`);
    if (button) button.focus();
    else this.#handlers.focusAway();
  }

  #setItemState(li, state) {
    li.dataset.state = state;
    li.querySelector('.state').textContent = STATE_LABELS[state];
  }

  #updateHistoryEdge() {
    this.loadOlderButton.hidden = !this.#hasOlder || this.#loadingOlder;
    this.historyState.textContent = this.#loadingOlder
      ? 'Loading older messages…'
      : this.#hasOlder
        ? ''
        : this.list.childElementCount === 0
          ? 'No messages yet. Say hello!'
          : 'This is the start of the conversation.';
  }
}

// ---------------------------------------------------------------------------
// ChatPage: the form, the alert, and the wiring
// ---------------------------------------------------------------------------

class ChatPage {
  #client = null;
  #view;
  #alertSource = null; // 'connection', 'notice' or 'stop': what the alert is about
  #lastWait = null; // why the connection is down, while it is

  constructor() {
    this.form = byId('join');
    this.fields = {me: byId('me'), peer: byId('peer'), token: byId('token')};
    this.chat = byId('chat');
    this.composer = byId('composer');
    this.text = byId('text');
    this.connection = byId('connection');
    this.alert = byId('alert');
    this.alertText = byId('alert-text');
    this.alertRetry = byId('alert-retry');
    this.sendButton = byId('send');
    this.blockButton = byId('block');
    this.blockState = byId('block-state');
    this.blockText = byId('block-text');
    this.recheckButton = byId('recheck');
    this.#view = new ChatView({
      edit: (seq, text) => this.#client?.editMessage(seq, text),
      remove: (seq) => this.#client?.deleteMessage(seq),
      focusAway: () => (this.text.disabled ? this.#view.log : this.text).focus(),
    });
    this.#bindForm();
    this.#bindChat();
  }

  /** Opens the chat the link names, or shows the form with the last values. */
  start() {
    const stored = storedSettings();
    const linked = settingsFromUrl();
    const me = linked.me ?? stored.me ?? '';
    const peer = linked.peer ?? stored.peer ?? '';
    // A stored token is for the stored name only.
    const token = linked.token ?? (stored.me === me ? stored.token : undefined) ?? '';
    this.fields.me.value = me;
    this.fields.peer.value = peer;
    this.fields.token.value = token;
    if (linked.me !== undefined && linked.peer !== undefined && this.#validate()) {
      this.open(me, peer, token);
    } else {
      this.#showForm();
    }
  }

  open(me, peer, token) {
    this.#client?.stop();
    saveSettings({me, peer, token});
    showChatInUrl(me, peer);
    this.#clearAlert();
    this.#view.reset(me, peer);
    this.#showBlock(null);
    const client = new ChatClient({me, peer, token, storage: localStorage});
    this.#client = client;
    this.#listen(client);
    this.form.hidden = true;
    this.chat.hidden = false;
    document.title = `${peer} – chatd`;
    client.start();
    this.text.focus();
  }

  leave() {
    this.#client?.stop();
    this.#client = null;
    this.#setConnection('idle', 'Not connected');
    this.#clearAlert();
    this.#showForm(this.fields.peer);
  }

  // ---- ChatClient events -> ChatView

  #listen(client) {
    const view = this.#view;
    const on = (type, handler) =>
      client.addEventListener(type, (event) => {
        if (client === this.#client) handler(event.detail);
      });
    on('state', (detail) => this.#onState(detail));
    on('hello', () => view.setNames(client.me, client.peer));
    on('messages', ({messages, older}) => {
      view.addMessages(messages, older);
      this.#afterRender();
    });
    on('history', ({hasOlder}) => {
      view.setHasOlder(hasOlder);
      this.#afterRender();
    });
    on('pending', ({entry}) => view.addPending(entry));
    on('ack', ({clientId, message}) => {
      view.acknowledge(clientId, message);
      if (this.#alertSource === 'notice') this.#clearAlert();
    });
    on('failed', ({clientId, code, message}) => {
      view.fail(clientId, code);
      // A block is told by the line above the composer.
      if (code !== 'blocked') {
        this.#showAlert('notice', `${describeFailure(code, client.peer)}${message ? ` (${message})` : ''}.`);
      }
    });
    on('changed', ({messages}) => view.applyChanges(messages));
    on('change-pending', ({change, message}) => view.setPendingChange(change, message));
    on('change-done', ({change, message}) => {
      view.clearPendingChange(change, message);
      if (this.#alertSource === 'notice') this.#clearAlert();
    });
    on('change-failed', ({change, message, code, reason}) => {
      view.clearPendingChange(change, message);
      this.#showAlert('notice', describeChangeFailure(code, change.action, client.peer, reason));
    });
    on('block', (detail) => this.#showBlock(detail));
    on('read', ({peerReadSeq}) => view.setPeerRead(peerReadSeq));
    on('presence', ({online}) => view.setPresence(online));
    on('typing', ({typing}) => view.setTyping(typing));
    on('notice', ({code, message}) => this.#showAlert('notice', describeNotice(code, message)));
    on('reset', () => {
      view.reset(client.me, client.peer);
      for (const entry of client.outbox.values()) view.addPending(entry);
    });
  }

  #onState(detail) {
    switch (detail.state) {
      case 'connecting':
        this.#setConnection('connecting', 'Connecting…');
        if (this.#alertSource === 'connection') {
          this.#showAlert('connection', describeWait({...this.#lastWait, retryInMs: null}));
        }
        break;
      case 'open':
        this.#lastWait = null;
        this.#setConnection('open', 'Connected');
        if (this.#alertSource === 'connection') this.#clearAlert();
        break;
      case 'waiting':
        this.#lastWait = detail;
        this.#view.setPresence(null);
        this.#setConnection('waiting', 'Offline, reconnecting…');
        this.#showAlert('connection', describeWait(detail), {retry: true});
        break;
      case 'stopped':
        this.#view.setPresence(null);
        this.#setConnection('stopped', 'Not connected');
        if (detail.kind !== 'stopped') this.#stopped(detail);
        break;
    }
  }

  /** A close that retrying cannot cure: back to the form, at the field to change. */
  #stopped(detail) {
    const me = this.#client?.me ?? this.fields.me.value;
    this.#client = null;
    this.#showAlert('stop', describeStop(detail, me));
    let field = this.fields.peer;
    if (['unauthorized', 'token_expired', 'forbidden'].includes(detail.kind)) field = this.fields.token;
    if (detail.kind === 'unknown_user' && detail.user === me) field = this.fields.me;
    this.#showForm(field);
  }

  /** After messages were drawn: mark what is on screen read, fill the screen with history. */
  #afterRender() {
    this.#markSeen();
    this.#loadOlderIfWanted();
  }

  #markSeen() {
    if (!this.#client || document.visibilityState !== 'visible' || !document.hasFocus()) return;
    const seq = this.#view.highestSeenPeerSeq();
    if (seq > 0) this.#client.markRead(seq);
  }

  #loadOlderIfWanted() {
    if (this.#client && this.#view.wantsOlder() && this.#client.loadOlder()) {
      this.#view.setLoadingOlder();
    }
  }

  // ---- DOM events -> ChatClient

  #bindForm() {
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!this.#validate()) return;
      this.open(this.fields.me.value.trim(), this.fields.peer.value.trim(), this.fields.token.value.trim());
    });
    this.alertRetry.addEventListener('click', () => this.#client?.reconnectNow());
    // The network is back: no need to wait for the backoff.
    window.addEventListener('online', () => this.#client?.reconnectNow());
  }

  #bindChat() {
    const view = this.#view;
    this.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#sendTyped();
    });
    this.text.addEventListener('keydown', (event) => {
      // Enter sends, Shift+Enter is a new line; not while an IME composes a character.
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#sendTyped();
      }
    });
    this.text.addEventListener('input', () => this.#client?.setTyping(this.text.value.trim() !== ''));
    this.text.addEventListener('blur', () => this.#client?.setTyping(false));
    byId('leave').addEventListener('click', () => this.leave());
    this.blockButton.addEventListener('click', () => {
      const client = this.#client;
      if (!client || this.blockButton.getAttribute('aria-disabled') === 'true') return;
      client.setBlocking(!client.blocking);
    });
    this.recheckButton.addEventListener('click', () => this.#client?.recheck());
    byId('load-older').addEventListener('click', () => {
      if (this.#client?.loadOlder()) view.setLoadingOlder();
    });
    byId('jump').addEventListener('click', () => {
      view.scrollToBottom();
      this.#markSeen();
      this.text.focus();
    });
    view.log.addEventListener('scroll', () => {
      view.onScroll();
      this.#markSeen();
      this.#loadOlderIfWanted();
    }, {passive: true});
    window.addEventListener('focus', () => this.#markSeen());
    document.addEventListener('visibilitychange', () => this.#markSeen());
  }

  #sendTyped() {
    const text = this.text.value.trim();
    if (!this.#client || text === '' || this.#client.blockedByPeer) return;
    this.#client.send(text);
    this.text.value = '';
    this.text.focus();
  }

  // ---- blocking

  /**
   * Who blocks whom (null: not known yet). I blocking the peer: "You blocked bob",
   * and the bar's button unblocks. The peer blocking me: "bob has blocked you",
   * the composer is off (and Edit hidden: edits are refused too), and "Check
   * again" reconnects to ask, as the end of a block is not told live.
   */
  #showBlock(detail) {
    const peer = this.#client?.peer ?? '';
    const {blocking = false, blockedByPeer = false, pending = false} = detail ?? {};
    this.blockButton.hidden = detail === null;
    const verb = pending ? (blocking ? 'Unblocking' : 'Blocking') : blocking ? 'Unblock' : 'Block';
    this.blockButton.textContent = pending ? `${verb}…` : verb;
    this.blockButton.setAttribute('aria-label', pending ? `${verb} ${peer}…` : `${verb} ${peer}`);
    // aria-disabled, not disabled: the button keeps the focus while the answer comes.
    this.blockButton.setAttribute('aria-disabled', String(pending));
    this.chat.dataset.blocking = String(blocking);
    this.chat.dataset.blockedByPeer = String(blockedByPeer);

    const composerHadFocus = this.composer.contains(document.activeElement);
    const stateHadFocus = this.blockState.contains(document.activeElement);
    this.text.disabled = blockedByPeer;
    this.sendButton.disabled = blockedByPeer;
    let text = '';
    if (blockedByPeer && blocking) {
      text = `${peer} has blocked you, and you blocked ${peer}. You cannot send messages in this chat.`;
    } else if (blockedByPeer) {
      text = `${peer} has blocked you. You cannot send messages in this chat.`;
    } else if (blocking) {
      text = `You blocked ${peer}. They cannot send you messages until you unblock them.`;
    }
    this.blockState.dataset.kind = blockedByPeer ? 'blocked' : 'blocking';
    this.recheckButton.hidden = !blockedByPeer;
    // Shown before its text changes, as the alert, so that it is announced; the
    // same text is not set again (announced again).
    this.blockState.hidden = text === '';
    if (this.blockText.textContent !== text) this.blockText.textContent = text;
    if (blockedByPeer && composerHadFocus) this.recheckButton.focus();
    if (!blockedByPeer && stateHadFocus) this.text.focus();
  }

  // ---- the form

  #validate() {
    let valid = true;
    let first = null;
    for (const name of ['me', 'peer']) {
      const input = this.fields[name];
      const problem = nameProblem(input.value.trim());
      const message = byId(`${name}-error`);
      message.textContent = problem ?? '';
      message.hidden = problem === null;
      input.setAttribute('aria-invalid', String(problem !== null));
      if (problem && !first) first = input;
      valid &&= problem === null;
    }
    first?.focus();
    return valid;
  }

  #showForm(focus) {
    this.chat.hidden = true;
    this.form.hidden = false;
    document.title = 'chatd';
    const target = focus ?? [this.fields.me, this.fields.peer].find((input) => input.value === '');
    (target ?? this.form.querySelector('button')).focus();
  }

  // ---- status and alerts

  #setConnection(state, text) {
    this.connection.dataset.connection = state;
    this.connection.textContent = text;
  }

  #showAlert(source, text, {retry = false} = {}) {
    this.#alertSource = source;
    this.alert.dataset.source = source;
    this.alertRetry.hidden = !retry;
    // Shown before its text changes: screen readers announce a live region's
    // changes, not the text a hidden one had when it appeared.
    this.alert.hidden = false;
    this.alertText.textContent = text;
  }

  #clearAlert() {
    this.#alertSource = null;
    this.alert.hidden = true;
    this.alertText.textContent = '';
    delete this.alert.dataset.source;
  }
}

new ChatPage().start();
