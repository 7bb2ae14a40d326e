/*
 * authsvc admin console: plain DOM, no framework, no build step.
 *
 * Rules this file keeps (the page's Content-Security-Policy enforces the first three):
 * - no inline script or style, no handler attributes: listeners are added here;
 * - every request goes to this origin;
 * - server data reaches the page through textContent only, never innerHTML;
 * - the access token lives in the `session` variable of this closure and nowhere else:
 *   not in storage, not in a cookie, not in the URL. Reloading the tab signs out.
 */
'use strict';

(() => {
  const ADMIN_SCOPE = 'admin';
  const GRANT_TYPES = ['password', 'refresh_token', 'client_credentials'];
  const AUDIT_TYPES = [
    'login.succeeded', 'login.failed', 'account.locked',
    'token.issued', 'token.refreshed', 'token.revoked', 'refresh.reuse_detected',
    'client.auth_failed',
    'user.created', 'user.updated', 'user.deleted', 'user.password_changed',
    'session.revoked', 'user.sessions_revoked', 'scope.created',
    'client.created', 'client.updated', 'client.deleted', 'client.secret_rotated',
    'key.rotated',
  ];
  const AUDIT_PAGE_SIZE = 50;
  const CLIENT_PAGE_SIZE = 25;
  const STATUS_SECONDS = 6;
  const NOT_ADMIN = 'This account is not an admin: it does not hold the admin scope.';
  const EXPIRED = 'Your session expired. Sign in again.';

  // ---------------------------------------------------------------- state

  /** The signed-in admin: {client, accessToken, refreshToken, userId, username, timer}, or null. */
  let session = null;
  let scopes = []; // [{name, description}] from GET /admin/scopes
  const users = { offset: 0, limit: 25, q: '', total: 0, items: [], open: null };
  const clients = { offset: 0, limit: CLIENT_PAGE_SIZE, total: 0, items: [], open: null };
  const audit = { type: '', user: '', since: '', items: [], nextBefore: null };
  let statusTimer = null;

  // ---------------------------------------------------------------- DOM helpers

  const byId = (id) => {
    const node = document.getElementById(id);
    if (node === null) throw new Error(`missing #${id}`);
    return node;
  };

  const PROPERTIES = new Set(['checked', 'disabled', 'hidden', 'value', 'type', 'name']);

  /** createElement with attributes and children; strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on')) throw new Error('add listeners with addEventListener');
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (PROPERTIES.has(key)) node[key] = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function button(text, attrs, onClick) {
    const node = el('button', { type: 'button', class: 'button', ...attrs }, text);
    if (onClick) node.addEventListener('click', onClick);
    return node;
  }

  const dash = () => el('span', { class: 'muted', 'aria-label': 'none' }, '—');

  function chips(names, emptyText) {
    if (!names || names.length === 0) return el('span', { class: 'muted' }, emptyText || '—');
    return el('ul', { class: 'chips' }, names.map((name) => el('li', { class: 'chip' }, name)));
  }

  function pad(number) {
    return String(number).padStart(2, '0');
  }

  /** The server's datetimes are UTC; one without an offset is read as UTC too. */
  function parseTime(text) {
    if (typeof text !== 'string') return null;
    const iso = /(Z|[+-]\d\d:?\d\d)$/i.test(text) ? text : `${text}Z`;
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function timeCell(text, withSeconds) {
    const date = parseTime(text);
    if (date === null) return el('td', {}, text ? String(text) : dash());
    let shown = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
      + `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    if (withSeconds) shown += `:${pad(date.getSeconds())}`;
    const time = el('time', { datetime: date.toISOString(), title: date.toString() }, shown);
    return el('td', { class: 'nowrap' }, time);
  }

  function textCell(value, attrs) {
    const empty = value === null || value === undefined || value === '';
    return el('td', attrs || {}, empty ? dash() : String(value));
  }

  /** An id shortened for a table cell; the whole id is in the title. */
  function idCell(value) {
    if (value === null || value === undefined || value === '') return el('td', {}, dash());
    const text = String(value);
    const short = text.length > 13 ? `${text.slice(0, 8)}…` : text;
    return el('td', {}, el('code', { class: 'id', title: text }, short));
  }

  function emptyRow(columns, text) {
    return el('tr', { class: 'empty' }, el('td', { colspan: columns }, text));
  }

  function checkList(container, idPrefix, names, selected) {
    const chosen = new Set(selected || []);
    container.replaceChildren();
    if (names.length === 0) {
      container.append(el('span', { class: 'muted small' }, 'No scopes yet: create one first.'));
      return;
    }
    names.forEach((name, index) => {
      const id = `${idPrefix}-${index}`;
      container.append(el('div', { class: 'check' },
        el('input', { id, type: 'checkbox', value: name, checked: chosen.has(name) }),
        el('label', { for: id }, name)));
    });
  }

  function checkedValues(container) {
    return Array.from(container.querySelectorAll('input[type=checkbox]'))
      .filter((input) => input.checked)
      .map((input) => input.value);
  }

  // ---------------------------------------------------------------- messages

  function showStatus(text) {
    const status = byId('console-status');
    status.textContent = text;
    status.hidden = false;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { status.hidden = true; }, STATUS_SECONDS * 1000);
  }

  function showError(text) {
    byId('console-error-text').textContent = text;
    byId('console-error').hidden = false;
  }

  function clearError() {
    byId('console-error').hidden = true;
    byId('console-error-text').textContent = '';
  }

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** The request was answered after its session ended: nothing to show. */
  class SessionGone extends Error {}

  async function readJson(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  /** The message of an error body: detail (string or FastAPI's list) or error_description. */
  function describeError(data, status) {
    if (data && typeof data === 'object') {
      if (typeof data.detail === 'string') return data.detail;
      if (Array.isArray(data.detail)) {
        const messages = data.detail.map((item) => {
          if (!item || typeof item !== 'object') return String(item);
          const loc = Array.isArray(item.loc) ? item.loc.filter((part) => part !== 'body') : [];
          const field = loc.length ? `${loc.join('.')}: ` : '';
          // Pydantic prefixes a validator's own message; the field name says enough.
          return `${field}${String(item.msg).replace(/^Value error, /, '')}`;
        });
        if (messages.length) return messages.join('; ');
      }
      if (typeof data.error_description === 'string') return data.error_description;
      if (typeof data.error === 'string') return data.error;
    }
    return `The service answered HTTP ${status}`;
  }

  async function api(method, path, body) {
    const mine = session;
    if (mine === null) throw new SessionGone();
    const init = {
      method,
      headers: { Authorization: `Bearer ${mine.accessToken}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      if (session !== mine) throw new SessionGone();
      throw new ApiError(0, 'The service did not answer (network error).');
    }
    if (session !== mine) throw new SessionGone();
    if (response.status === 401) {
      endSession(EXPIRED);
      throw new SessionGone();
    }
    const data = response.status === 204 ? null : await readJson(response);
    if (session !== mine) throw new SessionGone();
    if (!response.ok) throw new ApiError(response.status, describeError(data, response.status));
    return data;
  }

  /** Run an action from a button or form: errors go to the alert, the button waits. */
  async function act(trigger, action) {
    clearError();
    if (trigger) trigger.disabled = true;
    try {
      await action();
    } catch (error) {
      if (error instanceof SessionGone) return;
      showError(error instanceof ApiError ? error.message : `Unexpected error: ${error}`);
    } finally {
      if (trigger) trigger.disabled = false;
    }
  }

  function formParams(params) {
    return new URLSearchParams(params).toString();
  }

  // ---------------------------------------------------------------- sign-in and sign-out

  function showSignInError(text) {
    const alert = byId('sign-in-error');
    alert.textContent = text;
    alert.hidden = false;
  }

  async function signIn(event) {
    event.preventDefault();
    const usernameInput = byId('sign-in-username');
    const passwordInput = byId('sign-in-password');
    const submit = event.target.querySelector('button[type=submit]');
    const username = usernameInput.value.trim();
    const password = passwordInput.value;
    // A public client registered for the console, where unregistered ids are refused.
    const clientId = byId('sign-in-client').value.trim();
    const client = clientId ? { client_id: clientId } : {};
    passwordInput.value = '';
    byId('sign-in-error').hidden = true;
    byId('sign-in-notice').hidden = true;
    if (!username || !password) {
      showSignInError('Sign-in failed: enter a username and a password.');
      (username ? passwordInput : usernameInput).focus();
      return;
    }
    submit.disabled = true;
    try {
      let response;
      try {
        response = await fetch('/oauth2/token', {
          method: 'POST',
          headers: {
            'Content-Type': 'application/x-www-form-urlencoded',
            Accept: 'application/json',
          },
          body: formParams({
            grant_type: 'password', username, password, scope: ADMIN_SCOPE, ...client,
          }),
          cache: 'no-store',
          credentials: 'omit',
          redirect: 'error',
        });
      } catch {
        showSignInError('Sign-in failed: the service did not answer.');
        return;
      }
      const data = await readJson(response);
      if (!response.ok) {
        // Asking for a scope the account does not hold is invalid_scope (RFC 6749 §5.2).
        showSignInError(data && data.error === 'invalid_scope'
          ? NOT_ADMIN
          : `Sign-in failed: ${describeError(data, response.status)}`);
        passwordInput.focus();
        return;
      }
      if (!data || typeof data.access_token !== 'string') {
        showSignInError('Sign-in failed: the service sent no access token.');
        return;
      }
      if (!String(data.scope || '').split(' ').includes(ADMIN_SCOPE)) {
        revokeQuietly(data.access_token, data.refresh_token, client);
        showSignInError(NOT_ADMIN);
        return;
      }
      await startSession(data, username, client);
    } finally {
      submit.disabled = false;
    }
  }

  /** Best effort: end the refresh session and deny the access token (RFC 7009). */
  function revokeQuietly(accessToken, refreshToken, client) {
    const tokens = [[refreshToken, 'refresh_token'], [accessToken, 'access_token']];
    for (const [token, hint] of tokens) {
      if (typeof token !== 'string' || !token) continue;
      fetch('/oauth2/revoke', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: formParams({ token, token_type_hint: hint, ...client }),
        cache: 'no-store',
        credentials: 'omit',
        keepalive: true,
      }).catch(() => {});
    }
  }

  async function startSession(data, typedUsername, client) {
    const expiresIn = Number(data.expires_in) || 0;
    session = {
      client,
      accessToken: data.access_token,
      refreshToken: typeof data.refresh_token === 'string' ? data.refresh_token : null,
      userId: null,
      username: typedUsername,
      timer: expiresIn > 0 ? setTimeout(() => endSession(EXPIRED), expiresIn * 1000) : null,
    };
    byId('sign-in-form').reset();
    byId('session-user').textContent = typedUsername;
    byId('session-bar').hidden = false;
    byId('sign-in-view').hidden = true;
    byId('console-view').hidden = false;
    selectTab('users', false);
    await act(null, async () => {
      const me = await api('GET', '/users/me');
      session.userId = me.id;
      session.username = me.username;
      byId('session-user').textContent = me.username;
      await Promise.all([loadScopes(), loadUsers()]);
    });
  }

  /** Forget the token and every piece of server data on the page. */
  function endSession(message) {
    const old = session;
    session = null;
    if (old !== null) {
      clearTimeout(old.timer);
      revokeQuietly(old.accessToken, old.refreshToken, old.client);
    }
    scopes = [];
    Object.assign(users, { offset: 0, q: '', total: 0, items: [], open: null });
    Object.assign(clients, { offset: 0, total: 0, items: [], open: null });
    Object.assign(audit, { type: '', user: '', since: '', items: [], nextBefore: null });
    for (const id of ['users-body', 'clients-body', 'audit-body', 'scope-list',
      'new-user-scopes', 'new-client-scopes']) {
      byId(id).replaceChildren();
    }
    for (const id of ['users-range', 'clients-range', 'audit-range', 'session-user']) {
      byId(id).textContent = '';
    }
    for (const id of ['user-search-form', 'create-user-form', 'create-scope-form',
      'create-client-form', 'audit-filter-form']) {
      byId(id).reset();
    }
    resetClientForm();
    dismissSecret();
    clearError();
    byId('console-status').hidden = true;
    byId('console-view').hidden = true;
    byId('session-bar').hidden = true;
    byId('sign-in-view').hidden = false;
    const notice = byId('sign-in-notice');
    notice.textContent = message || '';
    notice.hidden = !message;
    byId('sign-in-error').hidden = true;
    byId('sign-in-username').focus();
  }

  // ---------------------------------------------------------------- tabs

  const TABS = ['users', 'clients', 'audit'];

  function selectTab(name, load = true) {
    for (const tab of TABS) {
      const selected = tab === name;
      const button = byId(`tab-${tab}`);
      button.setAttribute('aria-selected', String(selected));
      button.tabIndex = selected ? 0 : -1;
      byId(`panel-${tab}`).hidden = !selected;
    }
    if (!load) return;
    clearError();
    byId('console-status').hidden = true;
    if (name === 'users') act(null, () => Promise.all([loadScopes(), loadUsers()]));
    if (name === 'clients') act(null, () => Promise.all([loadScopes(), loadClients()]));
    if (name === 'audit') act(null, () => loadAudit(false));
  }

  function onTabKey(event) {
    const index = TABS.indexOf(event.target.id.replace('tab-', ''));
    let next = null;
    if (event.key === 'ArrowRight') next = TABS[(index + 1) % TABS.length];
    if (event.key === 'ArrowLeft') next = TABS[(index + TABS.length - 1) % TABS.length];
    if (event.key === 'Home') next = TABS[0];
    if (event.key === 'End') next = TABS[TABS.length - 1];
    if (next === null) return;
    event.preventDefault();
    selectTab(next);
    byId(`tab-${next}`).focus();
  }

  // ---------------------------------------------------------------- scopes

  async function loadScopes() {
    const list = await api('GET', '/admin/scopes');
    scopes = Array.isArray(list) ? list : [];
    renderScopes();
  }

  function scopeNames() {
    return scopes.map((scope) => scope.name);
  }

  function renderScopes() {
    const list = byId('scope-list');
    list.replaceChildren(...scopes.map((scope) => el('li', {
      class: 'chip',
      title: scope.description || undefined,
    }, scope.name)));
    if (scopes.length === 0) list.append(el('li', { class: 'muted small' }, 'No scopes yet.'));
    // Keep what was ticked in the create forms.
    const userBox = byId('new-user-scopes');
    checkList(userBox, 'new-user-scope', scopeNames(), checkedValues(userBox));
    const clientBox = byId('new-client-scopes');
    checkList(clientBox, 'new-client-scope', scopeNames(), checkedValues(clientBox));
    if (users.open && users.open.kind === 'scopes') renderUsers();
    if (clients.open && clients.open.kind === 'edit') renderClients();
  }

  async function createScope(event) {
    event.preventDefault();
    const form = event.target;
    const name = byId('new-scope-name').value.trim();
    const description = byId('new-scope-description').value.trim();
    await act(form.querySelector('button[type=submit]'), async () => {
      const created = await api('POST', '/admin/scopes', { name, description });
      form.reset();
      showStatus(`Scope ${created.name} created.`);
      await loadScopes();
    });
  }

  // ---------------------------------------------------------------- users

  async function loadUsers() {
    const params = new URLSearchParams({ offset: users.offset, limit: users.limit });
    if (users.q) params.set('q', users.q);
    const page = await api('GET', `/admin/users?${params}`);
    users.items = page.items;
    users.total = page.total;
    if (users.items.length === 0 && users.total > 0 && users.offset > 0) {
      // The page emptied (the last user on it was deleted): show the last page there is.
      users.offset = Math.max(0, Math.floor((users.total - 1) / users.limit) * users.limit);
      await loadUsers();
      return;
    }
    renderUsers();
  }

  function rangeText(offset, count, total) {
    if (total === 0 || count === 0) return `0 of ${total}`;
    return `${offset + 1}–${offset + count} of ${total}`;
  }

  function renderUsers() {
    const body = byId('users-body');
    body.replaceChildren();
    if (users.items.length === 0) {
      body.append(emptyRow(7, users.q ? `No user matches “${users.q}”.` : 'No users.'));
    }
    for (const user of users.items) {
      body.append(userRow(user));
      if (users.open && users.open.id === user.id) {
        body.append(userDetailRow(user, users.open.kind));
      }
    }
    byId('users-range').textContent = rangeText(users.offset, users.items.length, users.total);
    byId('users-prev').disabled = users.offset === 0;
    byId('users-next').disabled = users.offset + users.items.length >= users.total;
  }

  function isSelf(user) {
    return session !== null && session.userId === user.id;
  }

  function toggleUserDetail(user, kind) {
    const same = users.open && users.open.id === user.id && users.open.kind === kind;
    users.open = same ? null : { id: user.id, kind };
    renderUsers();
    const focus = document.querySelector(
      '#users-body tr.detail input:not([hidden]), #users-body tr.detail button');
    if (focus) focus.focus();
  }

  function userRow(user) {
    const name = user.username;
    const self = isSelf(user);
    const status = user.is_active
      ? el('span', { class: 'badge ok' }, 'Active')
      : el('span', { class: 'badge off' }, 'Disabled');
    const toggle = button(user.is_active ? 'Disable' : 'Enable', {
      'aria-label': `${user.is_active ? 'Disable' : 'Enable'} ${name}`,
      disabled: self && user.is_active,
      title: self ? 'You cannot disable yourself' : undefined,
    }, (event) => act(event.currentTarget, async () => {
      const updated = await api('PATCH', `/admin/users/${user.id}`, { is_active: !user.is_active });
      replaceUser(updated);
      showStatus(`${updated.username} is now ${updated.is_active ? 'active' : 'disabled'}.`);
    }));
    const isOpen = (kind) => Boolean(
      users.open && users.open.id === user.id && users.open.kind === kind);
    const detailButton = (text, label, kind, extra) => button(text, {
      'aria-label': label,
      'aria-expanded': String(isOpen(kind)),
      ...extra,
    }, () => toggleUserDetail(user, kind));
    const nameCell = el('th', { scope: 'row', class: 'name' }, name,
      self ? el('span', { class: 'badge you' }, 'you') : null);
    return el('tr', { 'data-user-id': user.id },
      nameCell,
      textCell(user.email),
      textCell(user.full_name),
      el('td', {}, status),
      el('td', {}, chips(user.scopes)),
      timeCell(user.created_at, false),
      el('td', { class: 'actions' },
        toggle,
        detailButton('Password', `Reset password of ${name}`, 'password'),
        detailButton('Scopes', `Edit scopes of ${name}`, 'scopes'),
        detailButton('Sessions', `Sessions of ${name}`, 'sessions'),
        detailButton('Delete', `Delete ${name}`, 'delete', {
          class: 'button danger-outline',
          disabled: self,
          title: self ? 'You cannot delete yourself' : undefined,
        })));
  }

  function replaceUser(updated) {
    users.items = users.items.map((user) => (user.id === updated.id ? updated : user));
    users.open = null;
    renderUsers();
  }

  function userDetailRow(user, kind) {
    const builders = {
      password: passwordEditor,
      scopes: scopesEditor,
      sessions: sessionsPanel,
      delete: deleteUserConfirm,
    };
    return el('tr', { class: 'detail' }, el('td', { colspan: 7 }, builders[kind](user)));
  }

  function cancelButton(onCancel) {
    return button('Cancel', { class: 'button ghost' }, onCancel);
  }

  function closeUserDetail() {
    users.open = null;
    renderUsers();
  }

  function passwordEditor(user) {
    const id = 'reset-password-input';
    const input = el('input', {
      id, type: 'password', autocomplete: 'new-password', required: true,
    });
    const form = el('form', {
      class: 'inline-form', 'aria-label': `Reset password of ${user.username}`, novalidate: true,
    },
      // For password managers: whose password this is.
      el('input', {
        type: 'text', autocomplete: 'username', value: user.username, readonly: true, hidden: true,
      }),
      el('label', { for: id }, `New password for ${user.username}`),
      input,
      el('button', { type: 'submit', class: 'button primary' }, 'Set password'),
      cancelButton(closeUserDetail));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const password = input.value;
      input.value = '';
      act(form.querySelector('button[type=submit]'), async () => {
        const updated = await api('PATCH', `/admin/users/${user.id}`, { password });
        replaceUser(updated);
        showStatus(`Password of ${updated.username} changed.`);
      });
    });
    return form;
  }

  function scopesEditor(user) {
    const names = [...new Set([...scopeNames(), ...user.scopes])].sort();
    const box = el('div', { class: 'check-list' });
    checkList(box, 'edit-user-scope', names, user.scopes);
    const form = el('form', {
      class: 'stack', 'aria-label': `Scopes of ${user.username}`, novalidate: true,
    },
      el('fieldset', { class: 'checks' }, el('legend', {}, `Scopes of ${user.username}`), box),
      el('div', { class: 'form-actions' },
        el('button', { type: 'submit', class: 'button primary' }, 'Save scopes'),
        cancelButton(closeUserDetail)));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      act(form.querySelector('button[type=submit]'), async () => {
        const updated = await api('PATCH', `/admin/users/${user.id}`, {
          scopes: checkedValues(box),
        });
        replaceUser(updated);
        showStatus(`Scopes of ${updated.username} saved.`);
      });
    });
    return form;
  }

  function sessionsPanel(user) {
    const holder = el('div', { class: 'sessions', 'aria-live': 'polite' },
      el('p', { class: 'muted' }, 'Loading sessions…'));
    const revokeAll = button('Revoke all sessions', {
      class: 'button danger',
      'aria-label': `Revoke all sessions of ${user.username}`,
      title: 'Ends every session and refuses every access token issued until now',
    }, (event) => act(event.currentTarget, async () => {
      await api('POST', `/admin/users/${user.id}/revoke-sessions`);
      showStatus(`Every session of ${user.username} was revoked.`);
      await fillSessions(user, holder);
    }));
    const panel = el('div', {
      class: 'stack', role: 'group', 'aria-label': `Sessions of ${user.username}`,
    },
      el('h3', {}, `Sessions of ${user.username}`),
      holder,
      el('div', { class: 'form-actions' },
        revokeAll,
        button('Close', { class: 'button ghost' }, closeUserDetail)));
    act(null, () => fillSessions(user, holder));
    return panel;
  }

  async function fillSessions(user, holder) {
    const list = await api('GET', `/admin/users/${user.id}/sessions`);
    if (!holder.isConnected) return;
    if (!list.length) {
      holder.replaceChildren(el('p', { class: 'muted' }, 'No active sessions.'));
      return;
    }
    const rows = list.map((item) => el('tr', {},
      idCell(item.id),
      textCell(item.client_id),
      timeCell(item.created_at, true),
      timeCell(item.last_used_at, true),
      timeCell(item.expires_at, true),
      el('td', { class: 'actions' }, button('Revoke', {
        'aria-label': `Revoke session ${item.id}`,
      }, (event) => act(event.currentTarget, async () => {
        await api('DELETE', `/admin/users/${user.id}/sessions/${item.id}`);
        showStatus('Session revoked.');
        await fillSessions(user, holder);
      })))));
    const headings = ['Session', 'Client', 'Started', 'Last used', 'Expires', 'Actions'];
    holder.replaceChildren(el('table', { class: 'data compact' },
      el('caption', { class: 'visually-hidden' }, `Sessions of ${user.username}`),
      el('thead', {}, el('tr', {}, headings.map((text) => el('th', { scope: 'col' }, text)))),
      el('tbody', {}, rows)));
  }

  function deleteUserConfirm(user) {
    const confirm = button(`Delete ${user.username}`, { class: 'button danger' },
      (event) => act(event.currentTarget, async () => {
        await api('DELETE', `/admin/users/${user.id}`);
        users.open = null;
        showStatus(`User ${user.username} deleted.`);
        await loadUsers();
      }));
    return el('div', { class: 'confirm', role: 'group', 'aria-label': `Delete ${user.username}` },
      el('p', {}, 'Delete ', el('strong', {}, user.username),
        '? Their sessions end with the account. This cannot be undone.'),
      el('div', { class: 'form-actions' }, confirm, cancelButton(closeUserDetail)));
  }

  async function createUser(event) {
    event.preventDefault();
    const form = event.target;
    const body = {
      username: byId('new-user-username').value.trim(),
      password: byId('new-user-password').value,
      scopes: checkedValues(byId('new-user-scopes')),
      is_active: byId('new-user-active').checked,
    };
    const email = byId('new-user-email').value.trim();
    const fullName = byId('new-user-full-name').value.trim();
    if (email) body.email = email;
    if (fullName) body.full_name = fullName;
    byId('new-user-password').value = '';
    await act(form.querySelector('button[type=submit]'), async () => {
      const created = await api('POST', '/admin/users', body);
      form.reset();
      renderScopes();
      showStatus(`User ${created.username} created.`);
      await loadUsers();
    });
  }

  // ---------------------------------------------------------------- clients

  async function loadClients() {
    const params = new URLSearchParams({ offset: clients.offset, limit: clients.limit });
    const page = await api('GET', `/admin/clients?${params}`);
    clients.items = page.items;
    clients.total = page.total;
    if (clients.items.length === 0 && clients.total > 0 && clients.offset > 0) {
      clients.offset = Math.max(0, Math.floor((clients.total - 1) / clients.limit) * clients.limit);
      await loadClients();
      return;
    }
    renderClients();
  }

  function clientPath(client) {
    return `/admin/clients/${encodeURIComponent(client.client_id)}`;
  }

  function renderClients() {
    const body = byId('clients-body');
    body.replaceChildren();
    if (clients.items.length === 0) body.append(emptyRow(7, 'No clients registered.'));
    for (const client of clients.items) {
      body.append(clientRow(client));
      if (clients.open && clients.open.id === client.client_id) {
        body.append(el('tr', { class: 'detail' }, el('td', { colspan: 7 },
          clients.open.kind === 'edit' ? clientEditor(client)
            : clients.open.kind === 'rotate' ? rotateConfirm(client)
              : deleteClientConfirm(client))));
      }
    }
    byId('clients-range').textContent = rangeText(
      clients.offset, clients.items.length, clients.total);
    byId('clients-prev').disabled = clients.offset === 0;
    byId('clients-next').disabled = clients.offset + clients.items.length >= clients.total;
  }

  function toggleClientDetail(client, kind) {
    const same = clients.open && clients.open.id === client.client_id && clients.open.kind === kind;
    clients.open = same ? null : { id: client.client_id, kind };
    renderClients();
    const focus = document.querySelector(
      '#clients-body tr.detail input, #clients-body tr.detail button');
    if (focus) focus.focus();
  }

  function closeClientDetail() {
    clients.open = null;
    renderClients();
  }

  function clientRow(client) {
    const detailButton = (text, kind, extra) => button(text, {
      'aria-label': `${text} ${client.name}`,
      ...extra,
    }, () => toggleClientDetail(client, kind));
    return el('tr', { 'data-client-id': client.client_id },
      el('th', { scope: 'row', class: 'name' }, client.name),
      el('td', {}, el('code', { class: 'id' }, client.client_id)),
      el('td', {}, client.confidential
        ? el('span', { class: 'badge ok' }, 'Confidential')
        : el('span', { class: 'badge neutral' }, 'Public')),
      el('td', {}, chips(client.grant_types)),
      el('td', {}, chips(client.scopes)),
      timeCell(client.created_at, false),
      el('td', { class: 'actions' },
        detailButton('Edit', 'edit'),
        client.confidential ? detailButton('Rotate secret', 'rotate') : null,
        detailButton('Delete', 'delete', { class: 'button danger-outline' })));
  }

  function clientEditor(client) {
    const nameId = 'edit-client-name';
    const nameInput = el('input', {
      id: nameId, value: client.name, maxlength: 255, autocomplete: 'off',
    });
    const grants = el('div', { class: 'check-list' });
    checkList(grants, 'edit-client-grant', GRANT_TYPES, client.grant_types);
    const scopeBox = el('div', { class: 'check-list' });
    const names = [...new Set([...scopeNames(), ...client.scopes])].sort();
    checkList(scopeBox, 'edit-client-scope', names, client.scopes);
    const form = el('form', {
      class: 'form-grid', 'aria-label': `Edit client ${client.name}`, novalidate: true,
    },
      el('div', { class: 'field span-2' }, el('label', { for: nameId }, 'Client name'), nameInput),
      el('fieldset', { class: 'field checks' }, el('legend', {}, 'Grant types'), grants),
      el('fieldset', { class: 'field checks' }, el('legend', {}, 'Scopes'), scopeBox),
      el('div', { class: 'span-2 form-actions' },
        el('button', { type: 'submit', class: 'button primary' }, 'Save changes'),
        cancelButton(closeClientDetail)));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const grantTypes = checkedValues(grants);
      if (grantTypes.length === 0) {
        showError('Choose at least one grant type.');
        return;
      }
      act(form.querySelector('button[type=submit]'), async () => {
        const updated = await api('PATCH', clientPath(client), {
          name: nameInput.value.trim(),
          grant_types: grantTypes,
          scopes: checkedValues(scopeBox),
        });
        clients.items = clients.items.map(
          (item) => (item.client_id === updated.client_id ? updated : item));
        clients.open = null;
        renderClients();
        showStatus(`Client ${updated.name} saved.`);
      });
    });
    return form;
  }

  function rotateConfirm(client) {
    const confirm = button('Rotate secret', {
      class: 'button danger', 'aria-label': `Confirm rotating the secret of ${client.name}`,
    },
      (event) => act(event.currentTarget, async () => {
        const rotated = await api('POST', `${clientPath(client)}/secret`);
        clients.open = null;
        renderClients();
        showSecret(client.name, rotated.client_id, rotated.client_secret);
      }));
    return el('div', {
      class: 'confirm', role: 'group', 'aria-label': `Rotate the secret of ${client.name}`,
    },
      el('p', {}, 'Rotate the secret of ', el('strong', {}, client.name),
        '? The current secret stops working at once.'),
      el('div', { class: 'form-actions' }, confirm, cancelButton(closeClientDetail)));
  }

  function deleteClientConfirm(client) {
    const confirm = button(`Delete ${client.name}`, { class: 'button danger' },
      (event) => act(event.currentTarget, async () => {
        await api('DELETE', clientPath(client));
        clients.open = null;
        showStatus(`Client ${client.name} deleted.`);
        await loadClients();
      }));
    return el('div', {
      class: 'confirm', role: 'group', 'aria-label': `Delete client ${client.name}`,
    },
      el('p', {}, 'Delete the client ', el('strong', {}, client.name),
        '? Its sessions end with it. This cannot be undone.'),
      el('div', { class: 'form-actions' }, confirm, cancelButton(closeClientDetail)));
  }

  async function createClient(event) {
    event.preventDefault();
    const form = event.target;
    const grantTypes = checkedValues(byId('new-client-grants'));
    if (grantTypes.length === 0) {
      showError('Choose at least one grant type.');
      return;
    }
    const body = {
      name: byId('new-client-name').value.trim(),
      grant_types: grantTypes,
      scopes: checkedValues(byId('new-client-scopes')),
      confidential: byId('new-client-confidential').checked,
    };
    await act(form.querySelector('button[type=submit]'), async () => {
      const created = await api('POST', '/admin/clients', body);
      form.reset();
      resetClientForm();
      if (created.client_secret) {
        showSecret(created.name, created.client_id, created.client_secret);
      } else {
        showStatus(`Public client ${created.name} created (it has no secret).`);
      }
      await loadClients();
    });
  }

  function resetClientForm() {
    checkList(byId('new-client-grants'), 'new-client-grant', GRANT_TYPES, ['client_credentials']);
    checkList(byId('new-client-scopes'), 'new-client-scope', scopeNames(), []);
  }

  function showSecret(name, clientId, secret) {
    byId('client-secret-name').textContent = name;
    byId('client-secret-id').textContent = clientId;
    byId('client-secret-value').textContent = secret;
    byId('client-secret-copied').textContent = '';
    const box = byId('client-secret-box');
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
    byId('client-secret-copy').focus();
  }

  function dismissSecret() {
    byId('client-secret-value').textContent = '';
    byId('client-secret-name').textContent = '';
    byId('client-secret-id').textContent = '';
    byId('client-secret-copied').textContent = '';
    byId('client-secret-box').hidden = true;
  }

  function selectSecret() {
    const range = document.createRange();
    range.selectNodeContents(byId('client-secret-value'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copySecret() {
    const secret = byId('client-secret-value').textContent;
    const note = byId('client-secret-copied');
    const byHand = () => {
      selectSecret();
      note.textContent = 'Selected: press Ctrl+C (⌘C) to copy it.';
    };
    if (!navigator.clipboard || !window.isSecureContext) {
      byHand();
      return;
    }
    navigator.clipboard.writeText(secret)
      .then(() => { note.textContent = 'Copied to the clipboard.'; })
      .catch(byHand);
  }

  // ---------------------------------------------------------------- audit

  async function loadAudit(older) {
    const params = new URLSearchParams({ limit: AUDIT_PAGE_SIZE });
    if (audit.type) params.set('type', audit.type);
    if (audit.user) params.set('user', audit.user);
    if (audit.since) params.set('since', audit.since);
    if (older) {
      if (audit.nextBefore === null) return;
      params.set('before', audit.nextBefore);
    }
    const page = await api('GET', `/admin/audit?${params}`);
    audit.items = older ? audit.items.concat(page.items) : page.items;
    audit.nextBefore = page.next_before;
    renderAudit();
  }

  function renderAudit() {
    const body = byId('audit-body');
    body.replaceChildren();
    if (audit.items.length === 0) body.append(emptyRow(9, 'No events match.'));
    for (const event of audit.items) {
      const outcome = event.outcome === 'success'
        ? el('span', { class: 'badge ok' }, 'success')
        : el('span', { class: 'badge off' }, String(event.outcome));
      const details = event.details && Object.keys(event.details).length
        ? el('td', { class: 'details' }, el('code', {}, JSON.stringify(event.details)))
        : el('td', {}, dash());
      body.append(el('tr', { 'data-event-id': event.id },
        timeCell(event.occurred_at, true),
        el('td', { class: 'nowrap' }, el('code', { class: 'type' }, event.type)),
        el('td', {}, outcome),
        idCell(event.actor_id),
        idCell(event.subject_id),
        textCell(event.username),
        textCell(event.client_id),
        textCell(event.ip, { class: 'nowrap' }),
        details));
    }
    const count = audit.items.length;
    const more = audit.nextBefore === null ? '' : ' (more are older)';
    byId('audit-range').textContent = count === 0 ? ''
      : `${count} event${count === 1 ? '' : 's'}, newest first${more}`;
    byId('audit-older').disabled = audit.nextBefore === null;
  }

  /** Read the filter fields; the datetime-local value is local time, sent as UTC. */
  function readAuditFilters() {
    audit.type = byId('audit-type').value;
    audit.user = byId('audit-user').value.trim();
    const since = byId('audit-since').value;
    const date = since ? new Date(since) : null;
    audit.since = date && !Number.isNaN(date.getTime()) ? date.toISOString() : '';
  }

  function applyAuditFilters(event) {
    event.preventDefault();
    readAuditFilters();
    act(event.target.querySelector('button[type=submit]'), () => loadAudit(false));
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    const typeSelect = byId('audit-type');
    for (const type of AUDIT_TYPES) typeSelect.append(el('option', { value: type }, type));
    resetClientForm();

    byId('sign-in-form').addEventListener('submit', signIn);
    // Closing or reloading the tab loses the token: end its session on the server too
    // (keepalive requests outlive the page).
    window.addEventListener('pagehide', () => {
      if (session !== null) revokeQuietly(session.accessToken, session.refreshToken, session.client);
    });
    byId('sign-out').addEventListener('click', () => endSession('You signed out.'));
    byId('console-error-close').addEventListener('click', clearError);

    for (const tab of TABS) {
      const node = byId(`tab-${tab}`);
      node.addEventListener('click', () => selectTab(tab));
      node.addEventListener('keydown', onTabKey);
    }

    byId('user-search-form').addEventListener('submit', (event) => {
      event.preventDefault();
      users.q = byId('user-search').value.trim();
      users.offset = 0;
      users.open = null;
      act(event.target.querySelector('button[type=submit]'), loadUsers);
    });
    byId('user-search').addEventListener('search', (event) => {
      // The field's clear button: show everyone again.
      if (event.target.value === '' && users.q !== '') {
        users.q = '';
        users.offset = 0;
        act(null, loadUsers);
      }
    });
    byId('users-limit').addEventListener('change', (event) => {
      users.limit = Number(event.target.value) || 25;
      users.offset = 0;
      act(null, loadUsers);
    });
    byId('users-prev').addEventListener('click', (event) => {
      users.offset = Math.max(0, users.offset - users.limit);
      users.open = null;
      act(event.currentTarget, loadUsers);
    });
    byId('users-next').addEventListener('click', (event) => {
      users.offset += users.limit;
      users.open = null;
      act(event.currentTarget, loadUsers);
    });
    byId('create-user-form').addEventListener('submit', createUser);
    byId('create-scope-form').addEventListener('submit', createScope);

    byId('clients-refresh').addEventListener('click',
      (event) => act(event.currentTarget, loadClients));
    byId('clients-prev').addEventListener('click', (event) => {
      clients.offset = Math.max(0, clients.offset - clients.limit);
      clients.open = null;
      act(event.currentTarget, loadClients);
    });
    byId('clients-next').addEventListener('click', (event) => {
      clients.offset += clients.limit;
      clients.open = null;
      act(event.currentTarget, loadClients);
    });
    byId('create-client-form').addEventListener('submit', createClient);
    byId('client-secret-copy').addEventListener('click', copySecret);
    byId('client-secret-dismiss').addEventListener('click', dismissSecret);

    byId('audit-filter-form').addEventListener('submit', applyAuditFilters);
    byId('audit-refresh').addEventListener('click', (event) => {
      readAuditFilters();
      act(event.currentTarget, () => loadAudit(false));
    });
    byId('audit-older').addEventListener('click',
      (event) => act(event.currentTarget, () => loadAudit(true)));

    byId('sign-in-username').focus();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
