// The bell (unread badge) and the notification list. The unread count starts from REST and
// then follows the events: `new_notification` adds one, `notification_read` (sent to every
// connection of the user, this tab's included; one event may carry many ids) takes one per
// id. Ids this tab marked itself are not counted twice, and a debounced REST read of the
// count converges any drift.

import { seg } from './api.js';
import { ago, avatar, h, replace, toast } from './dom.js';

const VERBS = {
  follow: 'started following you',
  follow_request: 'asked to follow you',
  follow_accepted: 'accepted your follow request',
  like: 'liked your post',
  comment: 'commented on your post',
  message: 'sent you a message',
};

function target(notification) {
  const actor = notification.actor?.id ?? notification.actor_id;
  if (notification.post_id) return `#/post/${notification.post_id}`;
  if (notification.type === 'message') return `#/messages/${actor}`;
  if (notification.type === 'follow_request') return '#/people';
  return `#/u/${actor}`;
}

/** A set holding the last `capacity` keys added (this module also loads in Node tests, where
 * the realtime client's `./lib/` path does not exist, hence not its LruSet). */
class BoundedSet {
  constructor(capacity) {
    this.capacity = capacity;
    this.keys = new Set();
  }
  add(key) {
    this.keys.delete(key);
    this.keys.add(key);
    if (this.keys.size > this.capacity) this.keys.delete(this.keys.values().next().value);
  }
  has(key) {
    return this.keys.has(key);
  }
}

/**
 * The unread count, as events move it. Each id counts at most once either way, whatever the
 * order: a `notification_read` that overtook its `new_notification` (events arrive out of
 * order after failures and retries) leaves that notification read, and an id read twice (this
 * tab marked it, then the event came) takes one off once. Bounded memory: the ids of the last
 * `capacity` notifications of each kind.
 */
export class UnreadCounter {
  constructor(capacity = 4096) {
    this.count = 0;
    this.counted = new BoundedSet(capacity);
    this.read = new BoundedSet(capacity);
  }

  /** The count from REST (`GET /notifications/unread-count`). */
  reset(count) {
    this.count = Math.max(0, count);
  }

  /** A notification arrived; true if it made the count grow. */
  received(notification) {
    const id = notification.id;
    if (notification.read || this.read.has(id) || this.counted.has(id)) return false;
    this.counted.add(id);
    this.count += 1;
    return true;
  }

  /** These ids were read (by this tab or anywhere); returns the ids newly read. */
  markRead(ids) {
    const fresh = [];
    for (const id of ids) {
      if (this.read.has(id)) continue;
      this.read.add(id);
      this.count = Math.max(0, this.count - 1);
      fresh.push(id);
    }
    return fresh;
  }

  isRead(id) {
    return this.read.has(id);
  }

  /** Everything is read (`POST /notifications/read-all`). */
  markAllRead() {
    this.count = 0;
  }
}

export function mountBell(ctx) {
  const badge = document.getElementById('bell-badge');
  const bell = document.getElementById('bell');
  const counter = new UnreadCounter();
  let recountTimer = null;

  const show = () => {
    const unread = counter.count;
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? '99+' : String(unread);
    bell.setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
    document.title = unread ? `(${unread}) Ripple` : 'Ripple';
  };
  const recount = async () => {
    try {
      counter.reset((await ctx.api.get('/notifications/unread-count')).count);
      show();
    } catch {
      // Keep the live count; the next event or resync tries again.
    }
  };
  const recountSoon = () => {
    clearTimeout(recountTimer);
    recountTimer = setTimeout(recount, 1500);
  };

  ctx.client.on('new_notification', (notification) => {
    if (counter.received(notification)) show();
    // Read already (its notification_read came first): shown as read.
    ctx.bus.emit('notification', counter.isRead(notification.id) ? { ...notification, read: true } : notification);
  });
  ctx.client.on('notification_read', ({ notification_ids: ids = [] }) => {
    // One event per recipient per stream batch: possibly hundreds of ids, handled in one pass.
    counter.markRead(ids);
    show();
    ctx.bus.emit('notifications_read', ids);
    recountSoon();
  });
  ctx.bus.on('resync', recount);

  ctx.notifications = {
    isRead: (id) => counter.isRead(id),
    async markRead(id) {
      counter.markRead([id]);
      show();
      try {
        await ctx.api.post(`/notifications/${seg(id)}/read`);
      } catch (error) {
        recountSoon();
        throw error;
      }
    },
    async markAllRead() {
      const { marked } = await ctx.api.post('/notifications/read-all');
      counter.markAllRead();
      show();
      recountSoon();
      return marked;
    },
  };
  recount();
}

export async function renderNotifications(ctx, scope, main) {
  const list = h('ol', { class: 'notifications', 'aria-label': 'Notifications' });
  const items = new Map();
  const markAll = h('button', { type: 'button', class: 'secondary small' }, 'Mark all as read');
  const empty = h('p', { class: 'empty', hidden: true }, 'Nothing yet. Likes, comments, follows and messages show up here.');
  replace(main, h('section', { class: 'page' },
    h('div', { class: 'card' },
      h('div', { class: 'card-title' }, h('h1', {}, 'Notifications'), markAll),
      list, empty)));

  const setRead = (id) => {
    const item = items.get(id);
    if (!item) return;
    item.classList.remove('unread');
    item.querySelector('.unread-dot')?.remove();
  };
  const add = async (notification, atTop) => {
    if (items.has(notification.id)) return;
    items.set(notification.id, null);
    const actor = notification.actor ?? (await ctx.users.get(notification.actor_id));
    const open = h('a', { class: 'notification-link', href: target(notification) },
      avatar(actor, 'sm'),
      h('span', { class: 'grow' }, h('strong', {}, actor.display_name), ' ', VERBS[notification.type] ?? notification.type,
        h('span', { class: 'muted' }, ` · ${ago(notification.created_at)}`)),
      notification.read ? null : h('span', { class: 'unread-dot', 'aria-label': 'unread' }));
    const item = h('li', { class: `notification${notification.read ? '' : ' unread'}`, 'data-id': notification.id }, open);
    open.addEventListener('click', () => {
      if (item.classList.contains('unread')) {
        setRead(notification.id);
        ctx.notifications.markRead(notification.id).catch((error) => toast(error.message, 'error'));
      }
    });
    items.set(notification.id, item);
    if (atTop) list.prepend(item);
    else list.append(item);
    empty.hidden = true;
  };

  markAll.addEventListener('click', async () => {
    try {
      await ctx.notifications.markAllRead();
      for (const id of items.keys()) setRead(id);
    } catch (error) {
      toast(error.message, 'error');
    }
  });
  scope.bus('notification', (notification) => add(notification, true));
  scope.bus('notifications_read', (ids) => {
    for (const id of ids) setRead(id);
  });

  const load = async () => {
    const page = await ctx.api.get('/notifications?limit=50');
    // After a gap or a reconnection the list is rebuilt: read states may have changed too.
    items.clear();
    list.replaceChildren();
    for (const notification of page.items) await add(notification, false);
    empty.hidden = items.size > 0;
  };
  scope.bus('resync', () => load().catch(() => {}));
  await load();
}
