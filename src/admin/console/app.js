// The Security settings page. Everything it shows comes from the admin API, called with
// fetch on the same origin (the browser sends the token cookie; the page never reads it),
// and every value goes into the page as text (textContent), never as markup.

const API = new URL('../v1/', import.meta.url);
const SETTINGS = new URL('settings.json', import.meta.url);

const CATEGORIES = {
  security_incident: 'Security incident',
  policy_change: 'Policy change',
  personnel_change: 'Personnel change',
  routine_maintenance: 'Routine maintenance',
  other: 'Other',
};

const ACTIONS = {
  logout_all: 'Logged all users out',
  user_logout: 'Signed a user out',
  logout_others: 'Signed out their other sessions',
  logout_scheduled: 'Scheduled a logout of all users',
  logout_cancelled: 'Cancelled a scheduled logout',
  policy_update: 'Changed the workspace policy',
};

// Why a token was refused (SPEC section 3), in words.
const REFUSALS = {
  missing_token: 'no sign-in was found in this browser',
  session_invalidated: 'every session of this workspace was signed out',
  session_revoked: 'your sessions were signed out',
  expired: 'your sign-in has expired',
  ip_not_allowed: "your IP address is not in this workspace's allow-list",
  sign_in_method_not_allowed: 'this workspace requires another sign-in method',
  session_too_old: 'this workspace requires a more recent sign-in',
};

const page = {
  me: null,
  settings: null,
};

const $ = (id) => document.getElementById(id);

// --- talking to the API -----------------------------------------------------------------

/** A refused call, with its message in words. */
class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
  }
}

async function call(method, path, body) {
  return (await exchange(method, path, body)).answer;
}

/** One API call: the JSON answer and the response headers; an ApiError when refused. */
async function exchange(method, path, body, headers = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, API), init);
  } catch {
    throw new ApiError(0, null);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, answer);
  }
  return { answer, headers: response.headers };
}

function describe(status, body) {
  const detail = (body && (body.message || body.reason || body.error)) || '';
  switch (status) {
    case 0:
      return 'The gateway could not be reached. Check your connection and try again.';
    case 400:
      return `The gateway refused the request: ${detail || 'it was not valid'}.`;
    case 401:
      return `You are not signed in any more: ${REFUSALS[body && body.reason] || detail || 'your sign-in was refused'}.`;
    case 403:
      return `You are not allowed to do this: ${REFUSALS[body && body.reason] || detail || 'the gateway refused it'}.`;
    case 409:
      return `This conflicts with the current settings: ${detail || 'nothing was changed'}.`;
    case 412:
      return 'Someone else changed the policy since this page loaded it. Their version is shown now; review it and save again.';
    case 413:
      return 'What you entered is too long. Shorten the reason or the ticket and try again.';
    case 503:
      return 'The gateway cannot do this right now: it is starting, or its store is unavailable. Nothing was changed; try again in a moment.';
    default:
      return `The gateway answered with an error (${status}${detail ? `: ${detail}` : ''}).`;
  }
}

const workspacePath = (rest) => `workspaces/${encodeURIComponent(page.me.workspace)}/${rest}`;

// --- small helpers ----------------------------------------------------------------------

/** A unix time (seconds), in the viewer's own time zone. */
const localTime = (unix) =>
  new Date(unix * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });

const rfc3339Time = (text) => localTime(Date.parse(text) / 1000);

const plural = (count, noun) => `${count} ${noun}${count === 1 ? '' : 's'}`;

function showError(id, error) {
  const element = $(id);
  element.textContent = error ? error.message : '';
  element.hidden = !error;
}

function announce(text) {
  $('page-status').textContent = text;
}

/** Fields of a form that were filled in, for a logout body. */
function filled(fields) {
  const body = {};
  for (const [name, id] of Object.entries(fields)) {
    const value = $(id).value.trim();
    if (value) body[name] = value;
  }
  return body;
}

/** `auth.login_url` with `return_to` (SPEC section 3), or null without one. */
function signInUrl() {
  const login = page.settings && page.settings.login_url;
  if (!login) return null;
  const url = new URL(login, location.href);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  const back = encodeURIComponent(location.pathname + location.search);
  return `${login}${login.includes('?') ? '&' : '?'}return_to=${back}`;
}

// --- who is here ------------------------------------------------------------------------

async function start() {
  page.settings = await fetch(SETTINGS, { credentials: 'same-origin' })
    .then((response) => response.json())
    .catch(() => null);
  try {
    page.me = await call('GET', 'me');
  } catch (error) {
    refuse(error.status === 401 ? 'You are not signed in' : 'The page cannot load', error.message);
    return;
  }
  const me = page.me;
  $('who').textContent = `Signed in as ${me.subject || 'an unnamed user'} in workspace ${me.workspace}.`;
  $('own').hidden = !me.subject;
  if (!me.is_admin) {
    refuse(
      `You are not an admin of ${me.workspace}`,
      `Only admins of ${me.workspace} can change its security settings. Ask one of them, or sign in with an admin account.`,
    );
    return;
  }
  for (const element of document.querySelectorAll('.workspace-name')) {
    element.textContent = me.workspace;
  }
  for (const id of ['state', 'user', 'policy', 'audit', 'danger']) {
    $(id).hidden = false;
  }
  await refresh();
}

/** Says why the settings are not shown, with a way to sign in when there is one. */
function refuse(title, text) {
  $('refused-title').textContent = title;
  $('refused-text').textContent = text;
  const link = $('sign-in');
  const href = signInUrl();
  link.hidden = !href;
  if (href) {
    link.href = href;
    link.textContent = page.me ? 'Sign in with another account' : 'Sign in';
  }
  $('refused').hidden = false;
  if (!page.me) $('who').textContent = 'Not signed in.';
}

/** Reloads what a change may have changed. */
async function refresh() {
  await Promise.all([loadSessions(), loadAudit(), loadPolicy()]);
}

// --- session state and audit trail ------------------------------------------------------

async function loadSessions() {
  try {
    const state = await call('GET', workspacePath('sessions'));
    const cutoff = state.sessions_valid_after;
    $('cutoff').textContent = cutoff == null ? 'No one has been signed out of this workspace yet.' : localTime(cutoff);
    const kept = state.preserved_session;
    $('preserved').textContent =
      kept == null ? 'None' : kept === page.me.session ? `${kept} (this session)` : kept;
    renderScheduled(state.scheduled_logout);
    showError('state-error', null);
  } catch (error) {
    showError('state-error', error);
  }
}

async function loadAudit() {
  const status = $('audit-state');
  try {
    const { events } = await call('GET', `${workspacePath('audit')}?limit=50`);
    renderAudit(events);
    const last = events.find((event) => event.action === 'logout_all');
    $('cutoff-by').textContent = last ? lastLogoutAll(last) : 'Never.';
    status.textContent = events.length ? '' : 'Nothing has been recorded yet.';
    status.className = 'muted';
  } catch (error) {
    status.textContent = `The audit trail cannot be shown. ${error.message}`;
    status.className = 'error';
  }
}

function lastLogoutAll(event) {
  const who = event.actor_subject || 'an unnamed admin';
  const why = event.reason ? `: "${event.reason}"` : ' (no reason given)';
  return `${rfc3339Time(event.at)} by ${who}${why}`;
}

function renderAudit(events) {
  const rows = events.map((event) => {
    const row = document.createElement('tr');
    const cells = [
      ['Time', rfc3339Time(event.at)],
      ['Action', ACTIONS[event.action] || event.action],
      ['User', event.subject || ''],
      ['By', event.actor_subject || ''],
      ['Reason', event.reason || ''],
      ['Category', CATEGORIES[event.category] || ''],
      ['Ticket', event.ticket || ''],
      ['From', event.client_ip || ''],
    ];
    for (const [label, text] of cells) {
      const cell = document.createElement('td');
      cell.dataset.label = label;
      cell.textContent = text;
      row.append(cell);
    }
    if (event.user_agent) row.title = event.user_agent;
    return row;
  });
  $('audit-rows').replaceChildren(...rows);
  $('audit-table').hidden = rows.length === 0;
}

// --- signing out one user, and one's own other sessions ---------------------------------

async function signOutUser(event) {
  event.preventDefault();
  const body = filled({ subject: 'user-name', reason: 'user-reason' });
  if (!body.subject) {
    showError('user-error', { message: 'Enter the user name of the user to sign out.' });
    $('user-name').focus();
    return;
  }
  $('user-submit').disabled = true;
  try {
    const answer = await call('POST', workspacePath('users/logout'), body);
    showError('user-error', null);
    $('user-form').reset();
    announce(
      `${answer.subject} was signed out: their sessions started before ${localTime(answer.sessions_valid_after)} have ended.`,
    );
    await loadAudit();
  } catch (error) {
    showError('user-error', error);
  } finally {
    $('user-submit').disabled = false;
  }
}

async function signOutOthers() {
  $('logout-others').disabled = true;
  try {
    await call('POST', 'me/logout-others', {});
    showError('own-error', null);
    announce('Your other sessions were signed out. This session stays signed in.');
    if (page.me.is_admin) await loadAudit();
  } catch (error) {
    showError('own-error', error);
  } finally {
    $('logout-others').disabled = false;
  }
}

// --- the workspace policy (SPEC section 9) ---------------------------------------------

/** The policy as loaded, with its ETag: a save sends it back in If-Match. */
const policyState = { etag: null };

async function loadPolicy() {
  $('my-ip').textContent = page.me.client_ip;
  try {
    const { answer, headers } = await exchange('GET', workspacePath('policy'));
    policyState.etag = headers.get('ETag');
    showPolicy(answer);
    showError('policy-error', null);
  } catch (error) {
    showError('policy-error', error);
  }
}

function showPolicy(policy) {
  $('policy-ips').value = (policy.ip_allowlist || []).join('\n');
  $('policy-claims').value = policy.require_claims
    .map((rule) => `${rule.claim}: ${rule.any_of.join(', ')}`)
    .join('\n');
  $('policy-age').value = policy.max_session_age_secs == null ? '' : String(policy.max_session_age_secs);
  $('policy-logout').checked = false;
  $('policy-updated').textContent = policy.updated_at
    ? `Last changed ${rfc3339Time(policy.updated_at)} by ${policy.updated_by || 'an unnamed admin'}.`
    : 'This workspace has no policy yet: every IP address, sign-in method and session age is accepted.';
}

const lines = (id) =>
  $(id)
    .value.split('\n')
    .map((line) => line.trim())
    .filter((line) => line);

/** The form as a policy document; a line it cannot read is an error in words. */
function policyDocument() {
  const ips = lines('policy-ips');
  const claims = lines('policy-claims').map((line) => {
    const colon = line.indexOf(':');
    const values = line.slice(colon + 1).split(',').map((v) => v.trim()).filter((v) => v);
    if (colon < 1 || values.length === 0) {
      throw new Error(`Required sign-in claims: write "${line}" as claim: value, value.`);
    }
    return { claim: line.slice(0, colon).trim(), any_of: values };
  });
  const age = $('policy-age').value.trim();
  if (age && !/^[0-9]+$/.test(age)) {
    throw new Error('Maximum session age: enter a whole number of seconds, or leave it empty.');
  }
  const body = {
    ip_allowlist: ips.length ? ips : null,
    require_claims: claims,
    max_session_age_secs: age ? Number(age) : null,
    logout: $('policy-logout').checked,
  };
  const reason = $('policy-reason').value.trim();
  if (reason) body.reason = reason;
  return body;
}

function addMyIp() {
  const ip = page.me.client_ip;
  if (!lines('policy-ips').includes(ip)) {
    const current = $('policy-ips').value.trimEnd();
    $('policy-ips').value = current ? `${current}\n${ip}` : ip;
  }
  $('policy-ips').focus();
}

async function savePolicy(event) {
  event.preventDefault();
  let body;
  try {
    body = policyDocument();
  } catch (error) {
    showError('policy-error', error);
    return;
  }
  $('policy-submit').disabled = true;
  try {
    const headers = policyState.etag ? { 'If-Match': policyState.etag } : {};
    const { answer, headers: answered } = await exchange('PUT', workspacePath('policy'), body, headers);
    policyState.etag = answered.get('ETag');
    showPolicy(answer);
    showError('policy-error', null);
    $('policy-reason').value = '';
    const logout = answer.sessions_valid_after == null ? '' : ' Everyone else was signed out; your session stays signed in.';
    announce(`The workspace policy was saved.${logout}`);
    await Promise.all([loadSessions(), loadAudit()]);
  } catch (error) {
    showError('policy-error', error);
    if (error.status === 412) await loadPolicy().then(() => showError('policy-error', error));
  } finally {
    $('policy-submit').disabled = false;
  }
}

// --- log all users out: the confirmation dialog -----------------------------------------

function openLogoutAll() {
  $('logout-all-form').reset();
  syncWhen();
  $('la-submit').disabled = true;
  showError('dialog-error', null);
  $('logout-all-dialog').showModal();
  $('la-reason').focus();
  loadActivity();
}

async function loadActivity() {
  const text = $('activity');
  text.textContent = 'Counting active sessions…';
  try {
    const activity = await call('GET', workspacePath('activity'));
    const hours = activity.window_secs / 3600;
    const span = hours === 1 ? 'the last hour' : `the last ${hours} hours`;
    const sessions = plural(activity.active_sessions, 'session');
    const users = plural(activity.active_users, 'user');
    text.textContent = `Active in ${span}: about ${sessions} of ${users}. All of them except yours will be signed out.`;
  } catch (error) {
    text.textContent = `Active sessions cannot be counted right now. ${error.message}`;
  }
}

function checkConfirmation() {
  $('la-submit').disabled = $('la-confirm').value !== page.me.workspace;
}

async function logOutAll(event) {
  event.preventDefault();
  if ($('la-confirm').value !== page.me.workspace) return;
  const submit = $('la-submit');
  submit.disabled = true;
  try {
    const body = filled({ reason: 'la-reason', category: 'la-category', ticket: 'la-ticket' });
    if ($('la-when-later').checked) {
      await scheduleLogoutAll(body);
      return;
    }
    const answer = await call('POST', workspacePath('logout-all'), body);
    $('logout-all-dialog').close();
    announce(
      `All sessions of ${answer.workspace} were invalidated. Everyone who signed in before ${localTime(answer.sessions_valid_after)} must sign in again; your session stays signed in.`,
    );
    await refresh();
  } catch (error) {
    showError('dialog-error', error);
    checkConfirmation();
  }
}

// --- scheduled logout (SPEC section 10) --------------------------------------------------

function renderScheduled(scheduled) {
  $('scheduled').textContent = scheduled
    ? `${rfc3339Time(scheduled.at)}, scheduled by ${scheduled.actor_subject || 'an unnamed admin'}`
    : 'None';
  $('cancel-scheduled').hidden = !scheduled;
}

/** The dialog's date and time field only counts when "At a later time" is chosen. */
function syncWhen() {
  const later = $('la-when-later').checked;
  $('la-at').disabled = !later;
  if (later && !$('la-at').value) $('la-at').focus();
}

/** Schedules the logout the dialog describes for its chosen local time. */
async function scheduleLogoutAll(body) {
  // A datetime-local value has no zone: Date reads it in the viewer's own.
  const at = new Date($('la-at').value);
  if (Number.isNaN(at.getTime())) {
    showError('dialog-error', { message: 'Choose the date and time of the logout.' });
    $('la-at').focus();
    checkConfirmation();
    return;
  }
  const answer = await call('POST', workspacePath('logout-all'), { ...body, at: at.toISOString() });
  $('logout-all-dialog').close();
  announce(
    `A logout of all users of ${answer.workspace} is scheduled for ${rfc3339Time(answer.scheduled_at)}. Until then nothing changes; you can cancel it under Sessions.`,
  );
  await refresh();
}

async function cancelScheduled() {
  $('cancel-scheduled').disabled = true;
  try {
    await call('DELETE', workspacePath('scheduled-logout'));
    showError('scheduled-error', null);
    announce('The scheduled logout was cancelled. No one will be signed out.');
  } catch (error) {
    const gone = { message: 'No logout is scheduled any more: it was cancelled or has already happened.' };
    showError('scheduled-error', error.status === 404 ? gone : error);
  } finally {
    $('cancel-scheduled').disabled = false;
    await refresh();
  }
}

// --- wiring -----------------------------------------------------------------------------

$('user-form').addEventListener('submit', signOutUser);
$('logout-others').addEventListener('click', signOutOthers);
$('policy-form').addEventListener('submit', savePolicy);
$('add-my-ip').addEventListener('click', addMyIp);
$('open-logout-all').addEventListener('click', openLogoutAll);
$('la-confirm').addEventListener('input', checkConfirmation);
$('logout-all-form').addEventListener('submit', logOutAll);
for (const id of ['la-when-now', 'la-when-later']) {
  $(id).addEventListener('change', syncWhen);
}
$('cancel-scheduled').addEventListener('click', cancelScheduled);
$('la-cancel').addEventListener('click', () => $('logout-all-dialog').close());
// Closed by Cancel, Escape or success: focus goes back to the button that opened it.
$('logout-all-dialog').addEventListener('close', () => $('open-logout-all').focus());

start();
