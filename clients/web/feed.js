// Home feed (composer, live posts, "N new posts" pill, late-event fallback), post cards
// (likes, edit within the window, delete) and the post page with live comments.

import { seg } from './api.js';
import { ago, avatar, h, icon, ICONS, replace, toast } from './dom.js';

/** The server's edit window (shared::domain::POST_EDIT_WINDOW_SECONDS). */
const EDIT_WINDOW_MS = 120 * 1000;
/** How long the page waits for its own post's `post_created` before refetching the feed. */
const OWN_POST_EVENT_WAIT_MS = 3000;
/** Scrolled further than this, new posts wait behind the pill instead of pushing content. */
const SCROLLED_DOWN_PX = 240;
/** Feed posts whose like and comment counts are kept live (subscriptions cost a slot each). */
const LIVE_POSTS = 30;
const MAX_POST_CHARS = 2000;

/** REST posts carry `author`, event posts `author_id`: one shape for the cards. */
async function normalise(ctx, raw) {
  const author = raw.author ?? (await ctx.users.get(raw.author_id));
  ctx.users.remember(author);
  return { ...raw, author, author_id: author.id };
}

const byNewest = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/**
 * What a `post_updated` changes on a shown post: its content only. The event carries the
 * whole post, but its `like_count` / `comment_count` are those of the moment of the edit and
 * may be older than a `like_updated` or `new_comment` already shown.
 */
export function postContent(post) {
  const content = { text: post.text, edited_at: post.edited_at ?? null };
  if (post.media_url !== undefined) content.media_url = post.media_url;
  return content;
}

/**
 * A post from REST through the client's "latest state wins" rule (the one it applies to
 * events): null if the post was deleted meanwhile, else the post with the newest content seen.
 */
const latestOf = (ctx, post) => (ctx.client.latest ? ctx.client.latest.observePost(post) : post);

// ---- post card ---------------------------------------------------------------------------------

/**
 * A post as a card. Returns {element, post, update(fields)}; `onRemoved` runs after a delete.
 */
export function postCard(ctx, scope, initial, { onRemoved, detail = false } = {}) {
  let post = { ...initial };
  const mine = post.author_id === ctx.me.id;
  const text = h('p', { class: 'post-text' });
  const edited = h('span', { class: 'muted edited' });
  const time = h('a', { class: 'muted time', href: `#/post/${post.id}` });
  const likeCount = h('span', { class: 'count', 'data-testid': 'like-count' });
  const like = h('button', { type: 'button', class: 'action like', 'data-testid': 'like' },
    h('span', { 'aria-hidden': 'true', class: 'heart' }, '♥'), likeCount);
  const comments = h('a', { class: 'action', href: `#/post/${post.id}` },
    icon(ICONS.comment), h('span', { class: 'count', 'data-testid': 'comment-count' }));
  const editButton = h('button', { type: 'button', class: 'action', hidden: true }, 'Edit');
  const deleteButton = h('button', { type: 'button', class: 'action danger', hidden: !mine }, 'Delete');
  const body = h('div', { class: 'post-body' }, text);
  const element = h('article', { class: `post${detail ? ' post-detail' : ''}`, 'data-post-id': post.id },
    h('a', { href: `#/u/${post.author.id}`, class: 'avatar-link', tabindex: -1, 'aria-hidden': 'true' }, avatar(post.author)),
    h('div', { class: 'post-main' },
      h('header', { class: 'post-header' },
        h('a', { class: 'name', href: `#/u/${post.author.id}` }, post.author.display_name),
        h('span', { class: 'muted handle' }, `@${post.author.username}`),
        h('span', { class: 'muted', 'aria-hidden': 'true' }, '·'), time, edited),
      body,
      h('footer', { class: 'post-actions' }, like, comments, editButton, deleteButton)));

  const render = () => {
    text.textContent = post.text;
    edited.textContent = post.edited_at ? '· edited' : '';
    time.textContent = ago(post.created_at);
    time.setAttribute('title', new Date(post.created_at).toLocaleString());
    likeCount.textContent = String(post.like_count);
    like.setAttribute('aria-pressed', String(Boolean(post.liked_by_me)));
    like.setAttribute('aria-label', `${post.liked_by_me ? 'Unlike' : 'Like'} (${post.like_count} likes)`);
    comments.querySelector('.count').textContent = String(post.comment_count);
    comments.setAttribute('aria-label', `${post.comment_count} comments`);
    const editable = mine && Date.now() - Date.parse(post.created_at) < EDIT_WINDOW_MS;
    editButton.hidden = !editable;
  };
  render();
  if (mine) {
    const left = EDIT_WINDOW_MS - (Date.now() - Date.parse(post.created_at));
    if (left > 0) scope.timeout(render, left + 50);
  }

  like.addEventListener('click', async () => {
    const liked = !post.liked_by_me;
    const before = { ...post };
    post = { ...post, liked_by_me: liked, like_count: Math.max(0, post.like_count + (liked ? 1 : -1)) };
    render();
    try {
      const state = liked ? await ctx.api.put(`/posts/${seg(post.id)}/like`) : await ctx.api.delete(`/posts/${seg(post.id)}/like`);
      // (No version on the REST answer: a like_updated newer than it may already have been
      // shown, but the next event or refetch converges.)
      if (state) post = { ...post, liked_by_me: state.liked, like_count: state.like_count };
    } catch (error) {
      post = before;
      toast(error.message, 'error');
    }
    render();
  });

  editButton.addEventListener('click', () => {
    const input = h('textarea', { class: 'edit-text', 'aria-label': 'Edit post', maxlength: MAX_POST_CHARS, rows: 3 });
    input.value = post.text;
    const save = h('button', { type: 'submit', class: 'primary small' }, 'Save');
    const cancel = h('button', { type: 'button', class: 'secondary small' }, 'Cancel');
    const form = h('form', { class: 'edit-form' }, input, h('div', { class: 'row' }, cancel, save));
    const close = () => replace(body, text);
    cancel.addEventListener('click', close);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        const updated = latestOf(ctx, await ctx.api.patch(`/posts/${seg(post.id)}`, { text: input.value }));
        if (updated) update(postContent(updated));
        close();
      } catch (error) {
        toast(error.code === 'edit_window_closed' ? 'The 2-minute edit window has closed.' : error.message, 'error');
        save.disabled = false;
        if (error.code === 'edit_window_closed') close();
      }
    });
    replace(body, form);
    input.focus();
  });

  deleteButton.addEventListener('click', async () => {
    if (!confirm('Delete this post?')) return;
    try {
      await ctx.api.delete(`/posts/${seg(post.id)}`);
      // A late post_created or post_updated of it must not bring it back.
      ctx.client.latest?.deletePost(post.id);
      element.remove();
      onRemoved?.(post.id);
    } catch (error) {
      toast(error.message, 'error');
    }
  });

  const update = (fields) => {
    const { author: _author, liked_by_me: liked, ...rest } = fields;
    post = { ...post, ...rest, ...(liked === undefined ? {} : { liked_by_me: liked }) };
    render();
  };
  return { element, get post() { return post; }, update };
}

// ---- home --------------------------------------------------------------------------------------

export async function renderHome(ctx, scope, main) {
  const cards = new Map();
  const waiting = []; // others' posts held behind the pill while scrolled down
  const ownPending = new Map(); // own post id → fallback timer
  const live = new Map(); // post id → release of its post:{id} subscription
  let nextCursor = null;

  const textarea = h('textarea', {
    id: 'composer-text', name: 'text', rows: 3, maxlength: MAX_POST_CHARS, required: true,
    placeholder: 'What is happening?', 'aria-describedby': 'composer-count',
  });
  const counter = h('span', { id: 'composer-count', class: 'muted small' }, `0 / ${MAX_POST_CHARS}`);
  const submit = h('button', { type: 'submit', class: 'primary', id: 'composer-submit' }, 'Post');
  const composer = h('form', { class: 'card composer', 'aria-label': 'New post' },
    h('div', { class: 'composer-row' }, avatar(ctx.me),
      h('div', { class: 'grow' }, h('label', { for: 'composer-text', class: 'visually-hidden' }, 'New post'), textarea)),
    h('div', { class: 'composer-footer' }, counter, submit));
  const pill = h('button', { type: 'button', class: 'new-posts-pill', hidden: true, 'data-testid': 'new-posts-pill' });
  const list = h('div', { class: 'feed', id: 'feed', 'aria-label': 'Home feed', role: 'feed', 'aria-busy': 'true' });
  const empty = h('p', { class: 'empty card', hidden: true }, 'Your feed is empty. Follow people from the People tab, or write the first post.');
  const more = h('button', { type: 'button', class: 'secondary wide', hidden: true }, 'Load more');
  replace(main, h('section', { class: 'page' }, h('h1', { class: 'visually-hidden' }, 'Home'), composer, pill, list, empty, more));

  const syncLive = () => {
    const keep = new Set([...list.children].slice(0, LIVE_POSTS).map((el) => el.dataset.postId));
    for (const [id, release] of live) {
      if (!keep.has(id)) {
        release();
        live.delete(id);
      }
    }
    for (const id of keep) if (id && !live.has(id)) live.set(id, ctx.rooms.hold(`post:${id}`));
  };
  scope.disposers.push(() => live.forEach((release) => release()));

  const showEmpty = () => {
    empty.hidden = cards.size > 0;
  };
  const add = (given, { atTop = false, fresh = false } = {}) => {
    const post = latestOf(ctx, given);
    if (!post) return; // deleted meanwhile (an index may lag behind the delete)
    if (cards.has(post.id)) {
      cards.get(post.id).update(post);
      return;
    }
    const card = postCard(ctx, scope, post, {
      onRemoved: (id) => {
        cards.delete(id);
        showEmpty();
      },
    });
    cards.set(post.id, card);
    if (fresh) card.element.classList.add('fresh');
    if (atTop) list.prepend(card.element);
    else {
      // Keep newest first whatever order answers arrive in.
      const after = [...list.children].find((el) => el.dataset.postId < post.id);
      list.insertBefore(card.element, after ?? null);
    }
    showEmpty();
  };

  // A refetch of the first page also tells which shown posts are gone (deleted, or their
  // author blocked or unfollowed while this page was away): those inside the page's range.
  // Posts newer than its newest are kept: an index may not show a post as fast as its event.
  const dropVanished = (page) => {
    if (!page.items.length) return;
    const ids = page.items.map((post) => post.id).sort();
    const fresh = new Set(ids);
    const [oldest, newest] = [ids[0], ids[ids.length - 1]];
    for (const [id, card] of cards) {
      const covered = id <= newest && (!page.next_cursor || id >= oldest);
      if (covered && !fresh.has(id)) {
        card.element.remove();
        cards.delete(id);
      }
    }
  };

  const load = async ({ append = false } = {}) => {
    const query = append && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : '';
    const page = await ctx.api.get(`/feed?limit=20${query}`);
    if (!append) dropVanished(page);
    for (const raw of page.items.sort(byNewest)) add(await normalise(ctx, raw));
    if (append || !nextCursor) nextCursor = page.next_cursor;
    more.hidden = !nextCursor;
    list.setAttribute('aria-busy', 'false');
    showEmpty();
    syncLive();
  };

  const updatePill = () => {
    pill.hidden = waiting.length === 0;
    pill.textContent = `↑ ${waiting.length} new post${waiting.length === 1 ? '' : 's'}`;
  };
  const flushWaiting = () => {
    for (const post of waiting.splice(0).sort(byNewest).reverse()) add(post, { atTop: true, fresh: true });
    updatePill();
    syncLive();
  };
  pill.addEventListener('click', () => {
    flushWaiting();
    window.scrollTo({ top: 0, behavior: 'smooth' });
    list.firstElementChild?.querySelector('a.name')?.focus({ preventScroll: true });
  });
  scope.listen(window, 'scroll', () => {
    if (window.scrollY < 40 && waiting.length) flushWaiting();
  }, { passive: true });

  textarea.addEventListener('input', () => {
    counter.textContent = `${[...textarea.value].length} / ${MAX_POST_CHARS}`;
  });
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) composer.requestSubmit();
  });
  composer.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = textarea.value;
    if (!text.trim()) return;
    submit.disabled = true;
    try {
      const post = await ctx.api.post('/posts', { text });
      // Keep whatever was typed while the request was in flight.
      if (textarea.value === text) textarea.value = '';
      counter.textContent = `${[...textarea.value].length} / ${MAX_POST_CHARS}`;
      // The post shows when its post_created arrives; a late event costs one refetch.
      if (!cards.has(post.id)) {
        ownPending.set(post.id, scope.timeout(async () => {
          ownPending.delete(post.id);
          if (cards.has(post.id)) return;
          ctx.diag.add('lateRefetches');
          await load().catch(() => {});
          if (!cards.has(post.id)) add(await normalise(ctx, post), { atTop: true, fresh: true });
        }, OWN_POST_EVENT_WAIT_MS));
      }
    } catch (error) {
      toast(error.message, 'error');
    } finally {
      submit.disabled = false;
      textarea.focus();
    }
  });

  scope.on('post_created', async (data) => {
    const post = await normalise(ctx, data);
    if (cards.has(post.id)) return;
    if (post.author_id === ctx.me.id) {
      clearTimeout(ownPending.get(post.id));
      ownPending.delete(post.id);
      add(post, { atTop: true, fresh: true });
    } else if (window.scrollY > SCROLLED_DOWN_PX) {
      if (!waiting.some((p) => p.id === post.id)) waiting.push(post);
      updatePill();
      return;
    } else {
      add(post, { atTop: true, fresh: true });
    }
    syncLive();
  });
  // The client passes on only the newest state (LatestState): an older edit, a lower like
  // version or anything about a deleted post never reaches these handlers.
  scope.on('post_updated', (data) => cards.get(data.id)?.update(postContent(data)));
  scope.on('post_deleted', ({ post_id: id }) => {
    cards.get(id)?.element.remove();
    cards.delete(id);
    const held = waiting.findIndex((p) => p.id === id);
    if (held >= 0) {
      waiting.splice(held, 1);
      updatePill();
    }
    showEmpty();
    syncLive();
  });
  scope.on('like_updated', ({ post_id: id, like_count: count }) => cards.get(id)?.update({ like_count: count }));
  scope.on('new_comment', (comment) => {
    const card = cards.get(comment.post_id);
    if (card) card.update({ comment_count: card.post.comment_count + 1 });
  });
  scope.bus('resync', () => load().catch(() => {}));
  more.addEventListener('click', () => load({ append: true }).catch((error) => toast(error.message, 'error')));

  await load();
  // Posts announced while another page was showing that the fetched feed does not hold yet
  // (see RecentPosts in app.js).
  for (const data of ctx.recentPosts.list()) {
    if (!cards.has(data.id)) add(await normalise(ctx, data), { atTop: true, fresh: true });
  }
  showEmpty();
  syncLive();
}

// ---- post page ---------------------------------------------------------------------------------

export async function renderPost(ctx, scope, main, id) {
  const raw = latestOf(ctx, await ctx.api.get(`/posts/${seg(id)}`));
  if (!raw) throw new Error('This post was deleted.');
  const card = postCard(ctx, scope, await normalise(ctx, raw), {
    detail: true,
    onRemoved: () => ctx.navigate('#/'),
  });
  scope.hold(`post:${id}`);
  const comments = h('ol', { class: 'comments', 'aria-label': 'Comments' });
  const shown = new Map();
  let nextCursor = null;
  let deleted = false;
  const more = h('button', { type: 'button', class: 'secondary wide', hidden: true }, 'More comments');
  const input = h('textarea', { id: 'comment-text', rows: 2, maxlength: MAX_POST_CHARS, required: true, placeholder: 'Write a comment' });
  const send = h('button', { type: 'submit', class: 'primary small' }, 'Reply');
  const form = h('form', { class: 'comment-form' },
    h('label', { for: 'comment-text', class: 'visually-hidden' }, 'Comment'), input, send);
  const gone = h('p', { class: 'card notice', hidden: true, role: 'status' }, 'This post was deleted.');
  replace(main, h('section', { class: 'page' },
    h('a', { href: '#/', class: 'back' }, '← Back'),
    h('h1', { class: 'visually-hidden' }, 'Post'),
    gone, card.element,
    h('section', { class: 'card' }, h('h2', {}, 'Comments'), comments, more, form)));

  const addComment = async (rawComment) => {
    if (shown.has(rawComment.id) || deleted) return;
    // A REST page may still list a comment whose comment_deleted already came.
    if (ctx.client.latest?.isCommentDeleted(rawComment.id)) return;
    shown.set(rawComment.id, null);
    const author = rawComment.author ?? (await ctx.users.get(rawComment.author_id));
    if (deleted) return; // the post went while the author was being looked up
    const mine = author.id === ctx.me.id || card.post.author_id === ctx.me.id;
    const remove = h('button', { type: 'button', class: 'action danger small', hidden: !mine }, 'Delete');
    const item = h('li', { class: 'comment', 'data-comment-id': rawComment.id },
      avatar(author, 'sm'),
      h('div', {},
        h('div', {}, h('a', { class: 'name', href: `#/u/${author.id}` }, author.display_name), ' ',
          h('span', { class: 'muted' }, `@${author.username} · ${ago(rawComment.created_at)}`)),
        h('p', { class: 'comment-text' }, rawComment.text), remove));
    remove.addEventListener('click', async () => {
      try {
        await ctx.api.delete(`/posts/${seg(id)}/comments/${seg(rawComment.id)}`);
        item.remove();
      } catch (error) {
        toast(error.message, 'error');
      }
    });
    shown.set(rawComment.id, item);
    const after = [...comments.children].find((el) => el.dataset.commentId > rawComment.id);
    comments.insertBefore(item, after ?? null);
  };
  const load = async (append = false) => {
    const query = append && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : '';
    const page = await ctx.api.get(`/posts/${seg(id)}/comments?limit=50${query}`);
    for (const comment of page.items) await addComment(comment);
    if (append || !nextCursor) nextCursor = page.next_cursor;
    more.hidden = !nextCursor;
  };
  more.addEventListener('click', () => load(true).catch((error) => toast(error.message, 'error')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    send.disabled = true;
    try {
      const comment = await ctx.api.post(`/posts/${seg(id)}/comments`, { text: input.value });
      input.value = '';
      if (!shown.has(comment.id)) card.update({ comment_count: card.post.comment_count + 1 });
      await addComment(comment);
    } catch (error) {
      toast(error.message, 'error');
    } finally {
      send.disabled = false;
    }
  });

  scope.on('new_comment', (comment) => {
    if (comment.post_id !== id) return;
    if (!shown.has(comment.id)) card.update({ comment_count: card.post.comment_count + 1 });
    addComment(comment);
  });
  scope.on('comment_deleted', ({ post_id: postId, comment_id: commentId }) => {
    if (postId !== id) return;
    shown.get(commentId)?.remove();
    shown.delete(commentId);
  });
  scope.on('like_updated', ({ post_id: postId, like_count: count }) => postId === id && card.update({ like_count: count }));
  scope.on('post_updated', (data) => data.id === id && card.update(postContent(data)));
  scope.on('post_deleted', ({ post_id: postId }) => {
    if (postId !== id) return;
    // The server sends no comment_deleted for a deleted post's comments: drop them here.
    deleted = true;
    card.element.remove();
    comments.replaceChildren();
    shown.clear();
    more.hidden = true;
    gone.hidden = false;
    form.hidden = true;
  });
  scope.bus('resync', async () => {
    if (deleted) return;
    try {
      const fresh = latestOf(ctx, await ctx.api.get(`/posts/${seg(id)}`));
      if (fresh) card.update(fresh);
      await load();
    } catch {
      // Deleted meanwhile: the next event or navigation shows it.
    }
  });
  await load();
}

// ---- a user's posts (profile) ------------------------------------------------------------------

/** Posts of `userId`, newest first, into `container`. */
export async function renderUserPosts(ctx, scope, container, userId) {
  const page = await ctx.api.get(`/users/${seg(userId)}/posts?limit=20`);
  if (!page.items.length) {
    replace(container, h('p', { class: 'empty' }, 'No posts yet.'));
    return;
  }
  const cards = [];
  for (const raw of page.items.sort(byNewest)) {
    const post = latestOf(ctx, raw);
    if (post) cards.push(postCard(ctx, scope, await normalise(ctx, post)).element);
  }
  replace(container, cards);
}
