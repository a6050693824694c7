// DOM building without HTML strings: every piece of user text goes through `textContent`
// (or an attribute set with setAttribute), never `innerHTML`, so a post reading
// `<img src=x onerror=alert(1)>` is shown as those characters.

/**
 * h('button', { class: 'like', onclick: fn, 'aria-pressed': 'true' }, 'Like', child)
 * Attributes starting with `on` become listeners; `class`, `text` and `dataset` are special;
 * `null`/`false` attributes are left out; children are nodes or strings (text nodes).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      element.className = value;
    } else if (name === 'text') {
      element.textContent = value;
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name === 'value' || name === 'checked' || name === 'disabled') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** "3 min", "2 h", "Apr 3": short relative time for lists. */
export function ago(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '';
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 45) return 'now';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return new Date(then).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

/** A round avatar with the user's initial and a colour derived from the id. */
export function avatar(user, size = 'md') {
  const name = user?.display_name || user?.username || '?';
  let hash = 0;
  for (const c of user?.id ?? name) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, [...name][0].toUpperCase());
  el.style.setProperty('--hue', String(hash % 360));
  return el;
}

/** A short-lived message at the bottom of the screen (role=status, read by screen readers). */
export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const item = h('div', { class: `toast toast-${kind}` }, message);
  region.append(item);
  setTimeout(() => item.remove(), 4000);
}

/** A small stroked icon (static path data only, never user input). */
export function icon(pathData) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', pathData);
  svg.append(path);
  return svg;
}

export const ICONS = Object.freeze({
  comment: 'M4 5h16a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H9l-5 4V6a1 1 0 0 1 1-1z',
});
