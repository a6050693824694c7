// People: search, follow requests, account privacy, profiles (follow / unfollow / block,
// message) and presence dots for mutual follows.

import { seg } from './api.js';
import { avatar, h, replace, toast } from './dom.js';
import { renderUserPosts } from './feed.js';

/**
 * Presence of mutual follows arrives without subscribing (`user_online` / `user_offline`);
 * the server sends no initial state, so a mutual is "online" once seen connecting.
 */
export function trackPresence(ctx) {
  const set = (online) => ({ user_id: id }) => {
    ctx.presence.set(id, online);
    ctx.bus.emit('presence', id);
  };
  ctx.client.on('user_online', set(true));
  ctx.client.on('user_offline', set(false));
}

/**
 * A dot on a mutual follow's avatar: green online, grey offline. Nothing until a transition
 * has been seen (the server sends no initial state, and guessing "offline" would be wrong for
 * someone who has been online all along), and nothing for users who are not mutuals.
 */
export function presenceDot(ctx, scope, userId) {
  const dot = h('span', { class: 'presence', hidden: true, 'data-testid': 'presence' });
  let mutual = false;
  const render = () => {
    const known = ctx.presence.get(userId);
    const online = known === true;
    dot.hidden = !mutual || known === undefined;
    dot.classList.toggle('online', online);
    dot.setAttribute('aria-label', online ? 'online' : 'offline');
    dot.setAttribute('title', online ? 'Online' : 'Offline');
  };
  if (userId !== ctx.me.id) {
    ctx.users.profile(userId).then((profile) => {
      mutual = profile.relationship.following && profile.relationship.followed_by;
      render();
    }).catch(() => {});
  }
  scope.bus('presence', (id) => id === userId && render());
  render();
  return dot;
}

function userRow(ctx, scope, user, extra) {
  return h('li', { class: 'person' },
    h('a', { href: `#/u/${user.id}`, class: 'person-link' },
      h('span', { class: 'avatar-wrap' }, avatar(user), presenceDot(ctx, scope, user.id)),
      h('span', { class: 'grow' }, h('strong', {}, user.display_name), h('br'), h('span', { class: 'muted' }, `@${user.username}`))),
    extra ?? null);
}

export async function renderPeople(ctx, scope, main) {
  const query = h('input', { id: 'people-search', type: 'search', name: 'q', maxlength: 30, pattern: '[A-Za-z0-9_]+', placeholder: 'Username', autocomplete: 'off' });
  const results = h('ol', { class: 'people', 'aria-label': 'Search results', 'aria-live': 'polite' });
  const form = h('form', { class: 'search', role: 'search' },
    h('label', { for: 'people-search' }, 'Search people'), h('div', { class: 'row' }, query, h('button', { type: 'submit', class: 'primary' }, 'Search')));
  const requests = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'follow-requests-title' });
  const blocked = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'blocked-title' });
  const privacy = h('input', { type: 'checkbox', id: 'privacy-toggle', role: 'switch' });
  const presence = h('input', { type: 'checkbox', id: 'presence-toggle', role: 'switch' });
  replace(main, h('section', { class: 'page' },
    h('section', { class: 'card' }, h('h1', {}, 'People'), form, results),
    requests,
    blocked,
    h('section', { class: 'card', 'aria-labelledby': 'account-title' },
      h('h2', { id: 'account-title' }, 'Your account'),
      h('p', {}, h('a', { href: `#/u/${ctx.me.id}` }, 'View your profile')),
      h('div', { class: 'toggle' }, privacy, h('label', { for: 'privacy-toggle' }, h('strong', {}, 'Private account'), h('br'),
        h('span', { class: 'muted small' }, 'New followers need your approval; only followers see your posts.'))),
      h('div', { class: 'toggle' }, presence, h('label', { for: 'presence-toggle' }, h('strong', {}, 'Show when I’m online'), h('br'),
        h('span', { class: 'muted small' }, 'People who follow you and whom you follow see a green dot.'))))));

  let searchTimer = null;
  const search = async () => {
    const q = query.value.trim();
    if (!/^[A-Za-z0-9_]{1,30}$/.test(q)) {
      replace(results, q ? h('li', { class: 'muted' }, 'Letters, digits and _ only.') : []);
      return;
    }
    try {
      const page = await ctx.api.get(`/users?q=${encodeURIComponent(q)}&limit=20`);
      page.items.forEach((user) => ctx.users.remember(user));
      replace(results, page.items.length ? page.items.map((user) => userRow(ctx, scope, user)) : h('li', { class: 'muted' }, 'Nobody by that name.'));
    } catch (error) {
      toast(error.message, 'error');
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });
  query.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 250);
  });
  scope.disposers.push(() => clearTimeout(searchTimer));

  const loadRequests = async () => {
    const page = await ctx.api.get('/follow-requests?limit=50');
    requests.hidden = page.items.length === 0;
    replace(requests, h('h2', { id: 'follow-requests-title' }, `Follow requests (${page.items.length})`),
      h('ol', { class: 'people' }, page.items.map(({ user }) => {
        const accept = h('button', { type: 'button', class: 'primary small' }, 'Accept');
        const reject = h('button', { type: 'button', class: 'secondary small' }, 'Decline');
        const decide = (verb) => async () => {
          try {
            await ctx.api.post(`/follow-requests/${seg(user.id)}/${verb}`);
            ctx.users.forget(user.id);
            await loadRequests();
          } catch (error) {
            toast(error.message, 'error');
          }
        };
        accept.addEventListener('click', decide('accept'));
        reject.addEventListener('click', decide('reject'));
        return userRow(ctx, scope, user, h('div', { class: 'row' }, reject, accept));
      })));
  };
  scope.bus('notification', (n) => n.type === 'follow_request' && loadRequests().catch(() => {}));

  const loadBlocked = async () => {
    const page = await ctx.api.get('/blocks?limit=50');
    blocked.hidden = page.items.length === 0;
    replace(blocked, h('h2', { id: 'blocked-title' }, 'Blocked accounts'),
      h('ol', { class: 'people' }, page.items.map(({ user }) => {
        ctx.users.remember(user);
        return h('li', { class: 'person' },
          h('a', { href: `#/u/${user.id}`, class: 'person-link' }, avatar(user),
            h('span', { class: 'grow' }, h('strong', {}, user.display_name), h('br'), h('span', { class: 'muted' }, `@${user.username}`))));
      })));
  };
  loadBlocked().catch(() => {});

  const me = await ctx.api.get('/users/me');
  privacy.checked = me.is_private;
  presence.checked = me.show_presence;
  const toggle = (input, field) => input.addEventListener('change', async () => {
    input.disabled = true;
    try {
      const updated = await ctx.api.patch('/users/me', { [field]: input.checked });
      ctx.me = updated;
      ctx.api.user = updated;
      toast('Saved.');
    } catch (error) {
      input.checked = !input.checked;
      toast(error.message, 'error');
    } finally {
      input.disabled = false;
    }
  });
  toggle(privacy, 'is_private');
  toggle(presence, 'show_presence');
  await loadRequests();
  query.focus();
}

export async function renderProfile(ctx, scope, main, userId) {
  const section = h('section', { class: 'page' });
  replace(main, section);
  const render = async () => {
    let profile;
    try {
      profile = await ctx.users.profile(userId, { fresh: true });
    } catch (error) {
      // A block hides profiles both ways (404); the blocker still needs a way back.
      if (error.status === 404 && (await blockedByMe(ctx, userId))) return renderBlocked();
      throw error;
    }
    const self = userId === ctx.me.id;
    const rel = profile.relationship ?? {};
    const actions = h('div', { class: 'row profile-actions' });
    const act = (label, cls, fn, testid) => {
      const button = h('button', { type: 'button', class: cls, 'data-testid': testid }, label);
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await fn();
          ctx.users.forget(userId);
          await render();
        } catch (error) {
          toast(error.message, 'error');
          button.disabled = false;
        }
      });
      return button;
    };
    if (!self && !rel.blocking) {
      if (rel.following) actions.append(act('Following ✓', 'secondary', () => ctx.api.delete(`/users/${seg(userId)}/follow`), 'unfollow'));
      else if (rel.requested) actions.append(act('Requested', 'secondary', () => ctx.api.delete(`/users/${seg(userId)}/follow`), 'cancel-request'));
      else actions.append(act(rel.followed_by ? 'Follow back' : 'Follow', 'primary', () => ctx.api.put(`/users/${seg(userId)}/follow`), 'follow'));
      actions.append(h('a', { class: 'button secondary', href: `#/messages/${userId}`, 'data-testid': 'message' }, 'Message'));
    }
    if (!self) {
      actions.append(rel.blocking
        ? act('Unblock', 'secondary', () => ctx.api.delete(`/users/${seg(userId)}/block`), 'unblock')
        : act('Block', 'danger-outline', async () => {
          if (!confirm(`Block @${profile.username}? They will not see your posts or message you, and follows between you end.`)) throw new Error('Not blocked.');
          await ctx.api.put(`/users/${seg(userId)}/block`);
        }, 'block'));
    }
    const posts = h('div', { class: 'feed' }, h('p', { class: 'muted' }, 'Loading posts…'));
    replace(section,
      h('section', { class: 'card profile' },
        h('div', { class: 'profile-head' },
          h('span', { class: 'avatar-wrap' }, avatar(profile, 'lg'), presenceDot(ctx, scope, userId)),
          h('div', { class: 'grow' },
            h('h1', { class: 'profile-name' }, profile.display_name, profile.is_private ? h('span', { class: 'lock', title: 'Private account', 'aria-label': 'private account' }, ' 🔒') : null),
            h('p', { class: 'muted' }, `@${profile.username}`, rel.followed_by && !self ? h('span', { class: 'chip' }, 'Follows you') : null))),
        profile.bio ? h('p', { class: 'bio' }, profile.bio) : null,
        h('p', { class: 'counts' },
          h('span', {}, h('strong', {}, String(profile.post_count)), ' posts'),
          h('span', {}, h('strong', {}, String(profile.follower_count)), ' followers'),
          h('span', {}, h('strong', {}, String(profile.following_count)), ' following')),
        self ? h('p', { class: 'muted small' }, 'This is you. Privacy settings are on the People tab.') : actions),
      h('h2', { class: 'section-title' }, 'Posts'),
      posts);
    if (rel.blocking) {
      replace(posts, h('p', { class: 'empty' }, 'You block this account.'));
      return;
    }
    renderUserPosts(ctx, scope, posts, userId).catch((error) => {
      replace(posts, h('p', { class: 'empty' }, error.status === 403 ? 'This account is private. Follow it to see its posts.' : error.message));
    });
  };
  const renderBlocked = () => {
    const user = ctx.users.known(userId) ?? { id: userId, username: 'unknown', display_name: 'Blocked account' };
    const unblock = h('button', { type: 'button', class: 'secondary', 'data-testid': 'unblock' }, 'Unblock');
    unblock.addEventListener('click', async () => {
      unblock.disabled = true;
      try {
        await ctx.api.delete(`/users/${seg(userId)}/block`);
        ctx.users.forget(userId);
        await render();
      } catch (error) {
        toast(error.message, 'error');
        unblock.disabled = false;
      }
    });
    replace(section, h('section', { class: 'card profile' },
      h('div', { class: 'profile-head' }, avatar(user, 'lg'),
        h('div', { class: 'grow' }, h('h1', { class: 'profile-name' }, user.display_name), h('p', { class: 'muted' }, `@${user.username}`))),
      h('p', {}, 'You block this account: neither of you sees the other’s profile, posts or messages. Follows between you were removed.'),
      h('div', { class: 'row profile-actions' }, unblock)));
  };
  await render();
}

/** Whether the caller blocks `userId` (GET /blocks, newest first, a few pages at most). */
async function blockedByMe(ctx, userId) {
  let cursor = null;
  for (let page = 0; page < 5; page += 1) {
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const list = await ctx.api.get(`/blocks?limit=100${query}`).catch(() => null);
    if (!list) return false;
    const found = list.items.find((item) => item.user.id === userId);
    if (found) {
      ctx.users.remember(found.user);
      return true;
    }
    cursor = list.next_cursor;
    if (!cursor) return false;
  }
  return false;
}
