// The bell (unread badge) and the notification list. The unread count starts from REST and
// then follows the events: `new_notification` adds one, `notification_read` (sent to every
// connection of the user, this tab's included) takes one per id. Ids this tab marked itself
// are not counted twice, and a debounced REST read of the count converges any drift.

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

export function mountBell(ctx) {
  const badge = document.getElementById('bell-badge');
  const bell = document.getElementById('bell');
  const markedHere = new Set();
  const counted = new Set();
  let unread = 0;
  let recountTimer = null;

  const show = () => {
    unread = Math.max(0, unread);
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? '99+' : String(unread);
    bell.setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
    document.title = unread ? `(${unread}) Ripple` : 'Ripple';
  };
  const recount = async () => {
    try {
      unread = (await ctx.api.get('/notifications/unread-count')).count;
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
    if (!notification.read && !counted.has(notification.id)) {
      counted.add(notification.id);
      unread += 1;
      show();
    }
    ctx.bus.emit('notification', notification);
  });
  ctx.client.on('notification_read', ({ notification_ids: ids = [] }) => {
    for (const id of ids) {
      if (markedHere.delete(id)) continue;
      unread -= 1;
    }
    show();
    ctx.bus.emit('notifications_read', ids);
    recountSoon();
  });
  ctx.bus.on('resync', recount);

  ctx.notifications = {
    async markRead(id) {
      markedHere.add(id);
      unread -= 1;
      show();
      try {
        await ctx.api.post(`/notifications/${seg(id)}/read`);
      } catch (error) {
        markedHere.delete(id);
        recountSoon();
        throw error;
      }
    },
    async markAllRead() {
      const { marked } = await ctx.api.post('/notifications/read-all');
      unread = 0;
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
  scope.bus('notifications_read', (ids) => ids.forEach(setRead));

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
