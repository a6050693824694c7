// Direct messages: the inbox state behind the nav badge (conversations + message requests),
// the conversation list, and a thread with live messages and a typing indicator.

import { seg } from './api.js';
import { ago, avatar, h, replace, toast } from './dom.js';
import { presenceDot } from './people.js';

const MAX_MESSAGE_CHARS = 4000;
/** Re-send `start` this often while the user keeps typing (the server holds it 5 s). */
const TYPING_REFRESH_MS = 2500;
/** Stop after this long without a keystroke. */
const TYPING_IDLE_MS = 4000;

const otherOf = (ctx, message) => (message.from === ctx.me.id ? message.to : message.from);

/** Conversations and requests, kept live for the nav badge and the inbox screen. */
export function mountInbox(ctx) {
  const badge = document.getElementById('messages-badge');
  const inbox = {
    conversations: new Map(), // other user id → Conversation
    requests: new Map(), // sender id → MessageRequest
    open: null, // the user id of the thread on screen
  };
  ctx.inbox = inbox;

  const show = () => {
    let unread = inbox.requests.size;
    for (const conversation of inbox.conversations.values()) unread += conversation.unread_count;
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? '99+' : String(unread);
    badge.parentElement.setAttribute('aria-label', unread ? `Messages, ${unread} unread` : 'Messages');
    ctx.bus.emit('inbox');
  };
  inbox.reload = async () => {
    try {
      const [conversations, requests] = await Promise.all([
        ctx.api.get('/conversations?limit=50'),
        ctx.api.get('/message-requests?limit=50'),
      ]);
      inbox.conversations = new Map(conversations.items.map((c) => [c.other_user.id, c]));
      inbox.requests = new Map(requests.items.map((r) => [r.other_user.id, r]));
      for (const c of conversations.items) ctx.users.remember(c.other_user);
      for (const r of requests.items) ctx.users.remember(r.other_user);
      show();
    } catch {
      // Shown again on the next event or resync.
    }
  };
  inbox.markRead = (userId) => {
    const conversation = inbox.conversations.get(userId);
    // No conversation yet (a first message not sent) or nothing unread: nothing to mark.
    if (!conversation?.unread_count) return Promise.resolve();
    conversation.unread_count = 0;
    show();
    return ctx.api.post(`/conversations/${seg(userId)}/read`).catch(() => {});
  };

  const record = async (message, isRequest) => {
    const other = otherOf(ctx, message);
    const user = await ctx.users.get(other);
    if (isRequest) {
      const request = inbox.requests.get(other) ?? { other_user: user, created_at: message.created_at };
      inbox.requests.set(other, { ...request, last_message: message });
    } else {
      const conversation = inbox.conversations.get(other) ?? { other_user: user, unread_count: 0 };
      const incoming = message.to === ctx.me.id;
      const reading = inbox.open === other && document.visibilityState === 'visible';
      inbox.conversations.set(other, {
        ...conversation,
        last_message: message,
        updated_at: message.created_at,
        unread_count: conversation.unread_count + (incoming && !reading ? 1 : 0),
      });
    }
    show();
  };
  ctx.client.on('new_message', (message) => record(message, false));
  ctx.client.on('message_request', (message) => record(message, true));
  ctx.bus.on('resync', inbox.reload);
  inbox.reload();
}

function conversationRow(ctx, scope, conversation, extra) {
  const user = conversation.other_user;
  const last = conversation.last_message;
  const preview = last ? `${last.from === ctx.me.id ? 'You: ' : ''}${last.text}` : 'No messages yet';
  return h('li', { class: 'conversation' },
    h('a', { href: `#/messages/${user.id}`, class: 'conversation-link' },
      h('span', { class: 'avatar-wrap' }, avatar(user), presenceDot(ctx, scope, user.id)),
      h('span', { class: 'grow conversation-text' },
        h('span', { class: 'row-between' }, h('strong', {}, user.display_name),
          h('span', { class: 'muted small' }, ago(conversation.updated_at ?? conversation.created_at))),
        h('span', { class: 'muted preview' }, preview)),
      conversation.unread_count ? h('span', { class: 'badge inline', 'aria-label': `${conversation.unread_count} unread` }, String(conversation.unread_count)) : null),
    extra ?? null);
}

export async function renderInbox(ctx, scope, main) {
  const requestsSection = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'requests-title' });
  const list = h('ol', { class: 'conversations', 'aria-label': 'Conversations' });
  const empty = h('p', { class: 'empty' }, 'No conversations yet. Open someone’s profile and press Message.');
  replace(main, h('section', { class: 'page' },
    requestsSection,
    h('section', { class: 'card' }, h('h1', {}, 'Messages'), list, empty)));

  const render = () => {
    const inbox = ctx.inbox;
    const requests = [...inbox.requests.values()];
    requestsSection.hidden = requests.length === 0;
    replace(requestsSection,
      h('h2', { id: 'requests-title' }, `Message requests (${requests.length})`),
      h('p', { class: 'muted small' }, 'People you don’t follow. They won’t know you’ve seen it until you accept.'),
      h('ol', { class: 'conversations' }, requests.map((request) => {
        const accept = h('button', { type: 'button', class: 'primary small' }, 'Accept');
        const reject = h('button', { type: 'button', class: 'secondary small' }, 'Delete');
        const decide = (verb) => async () => {
          try {
            await ctx.api.post(`/message-requests/${seg(request.other_user.id)}/${verb}`);
            await inbox.reload();
          } catch (error) {
            toast(error.message, 'error');
          }
        };
        accept.addEventListener('click', decide('accept'));
        reject.addEventListener('click', decide('reject'));
        return conversationRow(ctx, scope, request, h('div', { class: 'row' }, reject, accept));
      })));
    const conversations = [...inbox.conversations.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
    empty.hidden = conversations.length > 0;
    replace(list, conversations.map((c) => conversationRow(ctx, scope, c)));
  };
  scope.bus('inbox', render);
  render();
  await ctx.inbox.reload();
}

export async function renderThread(ctx, scope, main, otherId) {
  const other = await ctx.users.profile(otherId).catch(() => ctx.users.get(otherId));
  const list = h('ol', { class: 'messages', 'aria-label': `Conversation with ${other.display_name}`, 'aria-live': 'polite' });
  const shown = new Map(); // message id or client id → element
  const typing = h('p', { class: 'typing', 'data-testid': 'typing', hidden: true, role: 'status' },
    h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), `${other.display_name} is typing…`);
  const input = h('textarea', { id: 'message-text', rows: 1, maxlength: MAX_MESSAGE_CHARS, placeholder: 'Message', required: true });
  const send = h('button', { type: 'submit', class: 'primary', id: 'message-send' }, 'Send');
  const form = h('form', { class: 'message-form' }, h('label', { for: 'message-text', class: 'visually-hidden' }, 'Message'), input, send);
  const requestBar = h('div', { class: 'notice', hidden: true });
  const earlier = h('button', { type: 'button', class: 'link-button', hidden: true }, 'Earlier messages');
  replace(main, h('section', { class: 'page thread' },
    h('header', { class: 'card thread-header' },
      h('a', { href: '#/messages', class: 'back', 'aria-label': 'Back to messages' }, '←'),
      h('span', { class: 'avatar-wrap' }, avatar(other), presenceDot(ctx, scope, otherId)),
      h('div', { class: 'grow' }, h('h1', { class: 'thread-title' }, other.display_name),
        h('a', { class: 'muted small', href: `#/u/${otherId}` }, `@${other.username}`))),
    requestBar,
    h('div', { class: 'card thread-body' }, earlier, list, typing),
    form));

  let nextCursor = null;
  const bubble = (message, pending = false) => {
    const mine = message.from === ctx.me.id;
    return h('li', { class: `message ${mine ? 'mine' : 'theirs'}${pending ? ' pending' : ''}`, 'data-id': message.id ?? '' },
      h('p', { class: 'message-text' }, message.text),
      h('span', { class: 'meta' }, pending ? 'Sending…' : ago(message.created_at),
        message.status === 'requested' && mine ? ' · request' : ''));
  };
  const add = (message, { prepend = false } = {}) => {
    if (shown.has(message.id)) return;
    const element = bubble(message);
    const optimistic = message.client_message_id && shown.get(`client:${message.client_message_id}`);
    if (optimistic) {
      optimistic.replaceWith(element);
      shown.delete(`client:${message.client_message_id}`);
    } else if (prepend) list.prepend(element);
    else {
      const after = [...list.children].find((el) => el.dataset.id && el.dataset.id > message.id);
      list.insertBefore(element, after ?? null);
    }
    shown.set(message.id, element);
  };
  const scrollDown = () => list.lastElementChild?.scrollIntoView({ block: 'end' });
  const load = async (older = false) => {
    const query = older && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : '';
    const page = await ctx.api.get(`/conversations/${seg(otherId)}/messages?limit=50${query}`);
    for (const message of page.items) add(message, { prepend: older });
    if (older || !nextCursor) nextCursor = page.next_cursor;
    earlier.hidden = !nextCursor;
  };
  earlier.addEventListener('click', () => load(true).catch((error) => toast(error.message, 'error')));

  const showRequest = () => {
    const request = ctx.inbox.requests.get(otherId);
    requestBar.hidden = !request;
    if (!request) return;
    const accept = h('button', { type: 'button', class: 'primary small' }, 'Accept');
    const reject = h('button', { type: 'button', class: 'secondary small' }, 'Delete');
    accept.addEventListener('click', async () => {
      await ctx.api.post(`/message-requests/${seg(otherId)}/accept`).catch((error) => toast(error.message, 'error'));
      await ctx.inbox.reload();
    });
    reject.addEventListener('click', async () => {
      await ctx.api.post(`/message-requests/${seg(otherId)}/reject`).catch((error) => toast(error.message, 'error'));
      await ctx.inbox.reload();
      ctx.navigate('#/messages');
    });
    replace(requestBar, h('span', { class: 'grow' }, `${other.display_name} wants to send you messages.`), reject, accept);
  };
  scope.bus('inbox', showRequest);
  showRequest();

  // Typing indicator: shown until `expires_at` (measured as a duration, so clock skew between
  // the server and this machine does not matter), hidden by `stop` or by their next message.
  let hideTyping = null;
  const setTyping = (visible, ms = 0) => {
    clearTimeout(hideTyping);
    typing.hidden = !visible;
    if (visible) hideTyping = setTimeout(() => (typing.hidden = true), ms);
  };
  scope.disposers.push(() => clearTimeout(hideTyping));
  scope.on('user_typing', (data, event) => {
    if (data.from !== otherId) return;
    if (data.state !== 'start') return setTyping(false);
    const ms = Date.parse(data.expires_at) - Date.parse(event.occurred_at);
    setTyping(true, Math.min(10000, Math.max(1000, Number.isFinite(ms) ? ms : 5000)));
  });

  const onMessage = (message) => {
    if (otherOf(ctx, message) !== otherId) return;
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    add(message);
    if (message.from === otherId) {
      setTyping(false);
      if (document.visibilityState === 'visible') ctx.inbox.markRead(otherId);
    }
    if (atBottom || message.from === ctx.me.id) scrollDown();
  };
  scope.on('new_message', onMessage);
  scope.on('message_request', onMessage);
  scope.bus('resync', () => load().catch(() => {}));

  // Our own typing: `start` while keys are pressed (again every few seconds), `stop` when idle,
  // cleared or sent. The client throttles frames to the server's one per second.
  let lastStart = 0;
  let idleTimer = null;
  const stopTyping = () => {
    clearTimeout(idleTimer);
    if (lastStart) ctx.client.typing(otherId, 'stop');
    lastStart = 0;
  };
  input.addEventListener('input', () => {
    if (!input.value.trim()) return stopTyping();
    if (Date.now() - lastStart > TYPING_REFRESH_MS) {
      lastStart = Date.now();
      ctx.client.typing(otherId, 'start');
    }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  input.addEventListener('blur', () => !input.value.trim() && stopTyping());
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  scope.disposers.push(stopTyping);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    const clientId = crypto.randomUUID().replaceAll('-', '');
    const optimistic = bubble({ from: ctx.me.id, to: otherId, text }, true);
    shown.set(`client:${clientId}`, optimistic);
    list.append(optimistic);
    scrollDown();
    input.value = '';
    stopTyping();
    try {
      const message = await ctx.api.post(`/conversations/${seg(otherId)}/messages`, { text, client_message_id: clientId });
      add(message);
    } catch (error) {
      optimistic.classList.add('failed');
      optimistic.querySelector('.meta').textContent = `Not sent: ${error.message}`;
      shown.delete(`client:${clientId}`);
    }
  });

  ctx.inbox.open = otherId;
  scope.disposers.push(() => {
    if (ctx.inbox.open === otherId) ctx.inbox.open = null;
  });
  await load();
  scrollDown();
  ctx.inbox.markRead(otherId);
  input.focus();
}
