// twinhub's web console. It has no server side: every action is a call of
// the hub's REST API, signed with a SAS token made here from the connection
// string the user signs in with, so the hub checks each one against the
// policy's rights as it checks any client's. The connection string is kept
// only as a non-extractable Web Crypto key and the host and policy names,
// in this tab's memory; it is never sent, stored or put in a URL.
//
// Everything the page shows of the hub's data is set as text (textContent),
// never as HTML, so a device id or a twin cannot inject markup.

const API_VERSION = '2021-04-12';
// A token is made for an hour and made again five minutes before it ends.
const TOKEN_LIFETIME_S = 3600;
const TOKEN_RENEW_S = 300;
const DEVICE_PAGE_SIZE = 50;
const QUERY_PAGE_SIZE = 100;
const TELEMETRY_KEPT = 100;
const FEEDBACK_WAIT_MS = 120000;

// session: { host, policy, key (CryptoKey), token, tokenExpiry } once signed in.
let session = null;

const $ = (id) => document.getElementById(id);

// el makes an element with properties and children (nodes or text).
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function show(id, visible) { $(id).hidden = !visible; }

function say(text, isError = false) {
  const m = $('message');
  m.textContent = text;
  m.className = isError ? 'error' : '';
}

// ---- Signing in and signing requests ----

// parseConnectionString returns the parts of a hub connection string, or
// throws an error that says what is wrong without repeating the key.
function parseConnectionString(text) {
  const parts = {};
  text.trim().split(';').filter((p) => p.trim() !== '').forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq < 1) throw new Error(`Part ${i + 1} of the connection string is not Name=value.`);
    parts[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
  });
  if (parts.DeviceId) {
    throw new Error('This is a device connection string. Sign in with a hub policy\'s: HostName=…;SharedAccessKeyName=…;SharedAccessKey=…');
  }
  for (const k of ['HostName', 'SharedAccessKeyName', 'SharedAccessKey']) {
    if (!parts[k]) throw new Error(`The connection string has no ${k}.`);
  }
  return parts;
}

function base64Bytes(text, what) {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    throw new Error(`${what} is not base64.`);
  }
}

function bytesBase64(buf) {
  return btoa(String.fromCharCode(...new Uint8Array(buf)));
}

async function signIn(text) {
  if (!window.crypto || !crypto.subtle) throw new Error('This page needs Web Crypto, which browsers give only to pages served over HTTPS.');
  const parts = parseConnectionString(text);
  const key = await crypto.subtle.importKey('raw', base64Bytes(parts.SharedAccessKey, 'SharedAccessKey'),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  session = { host: parts.HostName, policy: parts.SharedAccessKeyName, key, token: '', tokenExpiry: 0 };
  try {
    // Any call proves the credentials; a count reads little. Every
    // policy with service or registry rights may query.
    await call('POST', '/devices/query', { body: { query: 'SELECT COUNT() AS n FROM devices' } });
  } catch (err) {
    session = null;
    throw new Error(`The hub refused this connection string: ${err.message}`);
  }
}

// authorization returns the Authorization header of a request: a SAS
// token for the whole hub, signed with the policy's key.
async function authorization() {
  const now = Math.floor(Date.now() / 1000);
  if (session.token && session.tokenExpiry - now > TOKEN_RENEW_S) return session.token;
  const se = now + TOKEN_LIFETIME_S;
  const sr = encodeURIComponent(session.host);
  const sig = await crypto.subtle.sign('HMAC', session.key, new TextEncoder().encode(`${sr}\n${se}`));
  session.token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(bytesBase64(sig))}&se=${se}&skn=${encodeURIComponent(session.policy)}`;
  session.tokenExpiry = se;
  return session.token;
}

class HubError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// hubError reads IoT Hub's error shape: {"Message":"ErrorCode:<code>;<text>", ...}.
function hubError(res, text) {
  let code = res.headers.get('iothub-errorcode') || '';
  let message = text || res.statusText;
  try {
    const body = JSON.parse(text);
    message = body.Message || body.message || message;
    const m = /^ErrorCode:([^;]*);([\s\S]*)$/.exec(message);
    if (m) {
      code = code || m[1];
      message = m[2];
    }
  } catch { /* not JSON: the text as it is */ }
  return new HubError(res.status, code, `${res.status} ${code ? code + ': ' : ''}${message}`);
}

function apiURL(path, query = {}) {
  const url = new URL(path, location.origin);
  url.searchParams.set('api-version', API_VERSION);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return url;
}

// call makes a REST call and returns {status, headers, body} with the body
// parsed as JSON, or throws a HubError.
async function call(method, path, { body, headers = {}, query = {}, signal } = {}) {
  const h = { Authorization: await authorization(), ...headers };
  let payload;
  if (typeof body === 'string') {
    payload = body;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['Content-Type'] = 'application/json; charset=utf-8';
  }
  const res = await fetch(apiURL(path, query), { method, headers: h, body: payload, cache: 'no-store', credentials: 'omit', signal });
  const text = await res.text();
  if (!res.ok) throw hubError(res, text);
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

const enc = encodeURIComponent;
const quoteETag = (etag) => `"${etag}"`;
// A string literal of the query language: quotes and backslashes escaped.
const sqlString = (s) => `'${s.replace(/[\\']/g, '\\$&')}'`;

// withoutMeta drops the $metadata and $version members of a property set.
function withoutMeta(props) {
  const out = {};
  for (const [k, v] of Object.entries(props || {})) if (k !== '$metadata' && k !== '$version') out[k] = v;
  return out;
}

function connectionString(deviceId, identity, moduleId) {
  const auth = identity.authentication || {};
  let s = `HostName=${session.host};DeviceId=${deviceId}`;
  if (moduleId) s += `;ModuleId=${moduleId}`;
  if (auth.type === 'sas') return `${s};SharedAccessKey=${auth.symmetricKey.primaryKey}`;
  if (auth.type === 'selfSigned' || auth.type === 'certificateAuthority') return `${s};x509=true`;
  return '';
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    say(`${what} copied.`);
  } catch {
    say(`Select the ${what.toLowerCase()} in its field and copy it: this browser did not let the page write the clipboard.`);
  }
}

// ---- Views ----

function showView(name) {
  for (const v of ['devices', 'device', 'query']) show(`${v}-view`, v === name);
  if (name !== 'device') stopTelemetry();
  say('');
}

// ---- Device list ----

// devicePages[i] is the continuation token of page i (page 0 has none).
const list = { search: '', pages: [''], index: 0, next: '' };

// listLoads counts the list's loads: an answer is shown only if no load
// began after its own, so that the slow answer to an earlier click (the
// Devices tab) cannot replace the rows of a later search. The table is
// aria-busy until the latest load's answer is shown: rows shown before
// then are about to be replaced.
let listLoads = 0;

async function loadDevices() {
  const load = ++listLoads;
  const table = $('device-table');
  table.setAttribute('aria-busy', 'true');
  try {
    await showDevices(load);
  } finally {
    if (load === listLoads) table.removeAttribute('aria-busy');
  }
}

async function showDevices(load) {
  const where = list.search ? ` WHERE STARTS_WITH(deviceId, ${sqlString(list.search)})` : '';
  const headers = { 'x-ms-max-item-count': String(DEVICE_PAGE_SIZE) };
  if (list.pages[list.index]) headers['x-ms-continuation'] = list.pages[list.index];
  const res = await call('POST', '/devices/query', { body: { query: `SELECT * FROM devices${where}` }, headers });
  if (load !== listLoads) return;
  list.next = res.headers.get('x-ms-continuation') || '';
  const rows = (res.body || []).map((t) => el('tr', {},
    el('td', {}, el('button', { type: 'button', class: 'link', onclick: () => openDevice(t.deviceId).catch(fail) }, t.deviceId)),
    el('td', {}, t.status || ''),
    el('td', { class: t.connectionState === 'Connected' ? 'connected' : '' }, t.connectionState || ''),
    el('td', {}, t.lastActivityTime || ''),
    el('td', {}, t.authenticationType || '')));
  $('device-table').tBodies[0].replaceChildren(...rows);
  $('devices-page').textContent = rows.length
    ? `Page ${list.index + 1}: ${rows.length} device${rows.length === 1 ? '' : 's'}`
    : (list.search ? `No device id starts with "${list.search}".` : 'No devices yet.');
  $('devices-prev').disabled = list.index === 0;
  $('devices-next').disabled = !list.next;
}

// ---- One device ----

// current: the device shown, its identity and twin, and what watches it.
let current = null;

async function openDevice(deviceId) {
  stopTelemetry();
  current = { deviceId, identity: null, twin: null };
  showView('device');
  $('device-title').textContent = deviceId;
  $('method-result').textContent = '';
  $('c2d-log').replaceChildren();
  $('telemetry-log').replaceChildren();
  $('twin-message').textContent = '';
  // The twin of the device shown before must not stay in the editor while
  // this one loads: a save in between would write it to this device.
  $('twin-versions').textContent = '';
  $('twin-editor').value = '';
  $('twin-reported').textContent = '';
  $('twin-save').disabled = true;
  await Promise.all([loadIdentity(), loadModules(), loadTwin()]);
}

async function loadIdentity() {
  const { body: d } = await call('GET', `/devices/${enc(current.deviceId)}`);
  current.identity = d;
  const facts = [
    ['Status', d.status],
    ['Connection', d.connectionState],
    ['Last activity', d.lastActivityTime],
    ['Authentication', (d.authentication || {}).type],
    ['IoT Edge', d.capabilities && d.capabilities.iotEdge ? 'yes' : 'no'],
    ['Cloud-to-device messages queued', d.cloudToDeviceMessageCount],
  ];
  $('device-identity').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '')]));
  $('device-connection-string').value = connectionString(d.deviceId, d);
  $('toggle-status').textContent = d.status === 'enabled' ? 'Disable device' : 'Enable device';
}

async function loadModules() {
  const { body: modules } = await call('GET', `/devices/${enc(current.deviceId)}/modules`);
  const rows = (modules || []).map((m) => {
    const cs = connectionString(m.deviceId, m, m.moduleId);
    return el('tr', {},
      el('td', {}, m.moduleId),
      el('td', { class: m.connectionState === 'Connected' ? 'connected' : '' }, m.connectionState || ''),
      el('td', {}, el('input', { readOnly: true, value: cs, className: 'module-connection-string' }),
        el('button', { type: 'button', onclick: () => copy(cs, 'Module connection string') }, 'Copy')),
      el('td', {}, el('button', { type: 'button', class: 'danger', onclick: () => deleteModule(m).catch(fail) }, 'Delete')));
  });
  $('module-table').tBodies[0].replaceChildren(...rows);
}

async function deleteModule(m) {
  if (!confirm(`Delete module ${m.moduleId} of ${m.deviceId}?`)) return;
  await call('DELETE', `/devices/${enc(m.deviceId)}/modules/${enc(m.moduleId)}`, { headers: { 'If-Match': quoteETag(m.etag) } });
  say(`Module ${m.moduleId} deleted.`);
  await loadModules();
}

async function toggleStatus() {
  const d = { ...current.identity, status: current.identity.status === 'enabled' ? 'disabled' : 'enabled' };
  await call('PUT', `/devices/${enc(d.deviceId)}`, { body: d, headers: { 'If-Match': quoteETag(d.etag) } });
  await loadIdentity();
  say(`Device ${d.deviceId} is ${d.status}.`);
}

async function deleteDevice() {
  const d = current.identity;
  if (!confirm(`Delete device ${d.deviceId}, its modules and its twin?`)) return;
  await call('DELETE', `/devices/${enc(d.deviceId)}`, { headers: { 'If-Match': quoteETag(d.etag) } });
  showView('devices');
  await loadDevices();
  say(`Device ${d.deviceId} deleted.`);
}

// ---- Twin ----

async function loadTwin() {
  const opened = current;
  const { body: t } = await call('GET', `/twins/${enc(opened.deviceId)}`);
  // An answer for a device the user has since left is dropped.
  if (opened === current) showTwin(t);
}

function showTwin(t) {
  current.twin = t;
  const p = t.properties || {};
  $('twin-versions').textContent = `etag ${t.etag} · version ${t.version} · desired $version ${(p.desired || {}).$version} · reported $version ${(p.reported || {}).$version}`;
  $('twin-editor').value = JSON.stringify({ tags: t.tags || {}, desired: withoutMeta(p.desired) }, null, 2);
  $('twin-reported').textContent = JSON.stringify(withoutMeta(p.reported), null, 2);
  $('twin-save').disabled = false;
}

async function saveTwin() {
  const m = $('twin-message');
  m.className = 'error';
  let edited;
  try {
    edited = JSON.parse($('twin-editor').value);
  } catch (err) {
    m.textContent = `Not saved: the text is not JSON (${err.message}).`;
    return;
  }
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(edited) || !isObject(edited.tags ?? {}) || !isObject(edited.desired ?? {})) {
    m.textContent = 'Not saved: the text must be an object {"tags": {...}, "desired": {...}}.';
    return;
  }
  const etag = current.twin.etag;
  try {
    const { body: t } = await call('PUT', `/twins/${enc(current.deviceId)}`, {
      body: { tags: edited.tags ?? {}, properties: { desired: edited.desired ?? {} } },
      headers: { 'If-Match': quoteETag(etag) },
    });
    showTwin(t);
    m.className = '';
    m.textContent = `Saved: desired $version ${t.properties.desired.$version}.`;
  } catch (err) {
    if (err.status === 412) {
      m.textContent = `Not saved: the twin changed since it was read (etag ${etag} is no longer current). Reload the twin and make the change again; your text is still in the editor.`;
      return;
    }
    m.textContent = `Not saved: ${err.message}`;
  }
}

// ---- Direct methods ----

async function invokeMethod() {
  const out = $('method-result');
  let payload = null;
  const text = $('method-payload').value.trim();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch (err) {
      out.textContent = `Not sent: the payload is not JSON (${err.message}).`;
      return;
    }
  }
  const timeout = Number($('method-timeout').value) || 30;
  out.textContent = 'Waiting for the device…';
  try {
    const { body } = await call('POST', `/twins/${enc(current.deviceId)}/methods`, {
      body: { methodName: $('method-name').value.trim(), payload, responseTimeoutInSeconds: timeout, connectTimeoutInSeconds: 0 },
    });
    out.textContent = `status ${body.status}\n${JSON.stringify(body.payload, null, 2)}`;
  } catch (err) {
    out.textContent = `Failed: ${err.message}`;
  }
}

// ---- Cloud-to-device messages and their feedback ----

// pending maps the id of a message sent with feedback asked to its log line.
const pending = new Map();
let feedbackPoller = null;

async function sendC2D() {
  const deviceId = current.deviceId;
  const messageId = crypto.randomUUID();
  const withFeedback = $('c2d-feedback').checked;
  const headers = { 'iothub-messageid': messageId, 'Content-Type': 'text/plain; charset=utf-8' };
  if (withFeedback) headers['iothub-ack'] = 'full';
  const line = el('li', {}, `${messageId}: sending…`);
  $('c2d-log').prepend(line);
  try {
    await call('POST', `/twinhub/c2d/${enc(deviceId)}`, { body: $('c2d-body').value, headers });
  } catch (err) {
    line.textContent = `${messageId}: not sent: ${err.message}`;
    return;
  }
  line.textContent = `${messageId}: queued for ${deviceId}${withFeedback ? ', waiting for feedback' : ''}`;
  if (withFeedback) {
    pending.set(messageId, { line, since: Date.now() });
    feedbackPoller ??= pollFeedback().finally(() => { feedbackPoller = null; });
  }
}

// pollFeedback reads the hub's feedback queue while messages wait for
// theirs. A batch holding only records of this page's messages is
// completed; one with others' is given back (abandoned) for their
// receivers, after this page has shown what was its own.
async function pollFeedback() {
  while (session && pending.size) {
    for (const [id, p] of pending) {
      if (Date.now() - p.since > FEEDBACK_WAIT_MS) {
        p.line.textContent = `${id}: no feedback within ${FEEDBACK_WAIT_MS / 1000} s`;
        pending.delete(id);
      }
    }
    let res;
    try {
      res = await call('GET', '/messages/serviceBound/feedback');
    } catch (err) {
      for (const [id, p] of pending) p.line.textContent = `${id}: feedback not readable: ${err.message}`;
      pending.clear();
      return;
    }
    if (res.status === 200 && Array.isArray(res.body)) {
      const lock = (res.headers.get('ETag') || '').replace(/"/g, '');
      let others = false;
      for (const r of res.body) {
        const p = pending.get(r.originalMessageId);
        if (!p) { others = true; continue; }
        p.line.textContent = `${r.originalMessageId}: feedback ${r.statusCode} (${r.description || ''}) at ${r.enqueuedTimeUtc}`;
        pending.delete(r.originalMessageId);
      }
      const path = `/messages/serviceBound/feedback/${enc(lock)}`;
      await (others ? call('POST', `${path}/abandon`) : call('DELETE', path)).catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---- Live telemetry ----

let telemetry = null; // an AbortController while watching

function stopTelemetry() {
  if (telemetry) telemetry.abort();
  telemetry = null;
  $('telemetry-toggle').textContent = 'Watch telemetry';
}

async function watchTelemetry() {
  if (telemetry) {
    stopTelemetry();
    return;
  }
  const controller = new AbortController();
  telemetry = controller;
  const log = $('telemetry-log');
  const button = $('telemetry-toggle');
  button.textContent = 'Stop watching';
  try {
    // The hub's telemetry stream (newline-delimited JSON) read with fetch,
    // not EventSource, so that the token goes in a header, not the URL.
    const res = await fetch(apiURL('/twinhub/events', { deviceId: current.deviceId, from: 'now' }), {
      headers: { Authorization: await authorization() }, cache: 'no-store', credentials: 'omit', signal: controller.signal,
    });
    if (!res.ok) throw hubError(res, await res.text());
    log.prepend(el('li', { class: 'hint' }, `Watching telemetry of ${current.deviceId} since ${new Date().toISOString()}`));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim()) showEvent(JSON.parse(line));
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) log.prepend(el('li', { class: 'error' }, `Telemetry stream ended: ${err.message}`));
  } finally {
    if (telemetry === controller) stopTelemetry();
  }
}

function showEvent(e) {
  const log = $('telemetry-log');
  const body = e.body !== undefined ? e.body : (e.bodyBase64 ? `(${atob(e.bodyBase64).length} bytes, not text)` : '');
  const props = e.properties ? ` ${JSON.stringify(e.properties)}` : '';
  log.prepend(el('li', { class: 'event' }, `${e.enqueuedTime} ${e.moduleId ? e.moduleId + ': ' : ''}${body}${props}`));
  while (log.children.length > TELEMETRY_KEPT) log.lastElementChild.remove();
}

// ---- Queries ----

const queryState = { text: '', next: '', page: 0 };

async function runQuery(continuation) {
  const headers = { 'x-ms-max-item-count': String(QUERY_PAGE_SIZE) };
  if (continuation) headers['x-ms-continuation'] = continuation;
  let res;
  try {
    res = await call('POST', '/devices/query', { body: { query: queryState.text }, headers });
  } catch (err) {
    $('query-table').tHead.replaceChildren();
    $('query-table').tBodies[0].replaceChildren();
    $('query-count').textContent = '';
    $('query-next').hidden = true;
    say(`Query refused: ${err.message}`, true);
    return;
  }
  say('');
  queryState.next = res.headers.get('x-ms-continuation') || '';
  queryState.page = continuation ? queryState.page + 1 : 1;
  const items = Array.isArray(res.body) ? res.body : [];
  const columns = [];
  for (const item of items) {
    if (item !== null && typeof item === 'object') {
      for (const k of Object.keys(item)) if (!columns.includes(k)) columns.push(k);
    }
  }
  const cell = (v) => (v !== null && typeof v === 'object'
    ? el('td', { class: 'json' }, JSON.stringify(v, null, 1))
    : el('td', {}, v === undefined ? '' : String(v)));
  const scalar = columns.length === 0;
  $('query-table').tHead.replaceChildren(el('tr', {}, ...(scalar ? [el('th', {}, 'value')] : columns.map((c) => el('th', {}, c)))));
  $('query-table').tBodies[0].replaceChildren(...items.map((item) => el('tr', {},
    ...(scalar ? [cell(item)] : columns.map((c) => cell(item == null ? undefined : item[c]))))));
  $('query-count').textContent = `Page ${queryState.page}: ${items.length} row${items.length === 1 ? '' : 's'}${queryState.next ? ', more to come' : ''}`;
  $('query-next').hidden = !queryState.next;
}

// ---- Wiring ----

function fail(err) {
  say(err.message || String(err), true);
}

// on runs an async handler for an element's event, showing its error.
function on(id, event, handler) {
  $(id).addEventListener(event, (e) => {
    if (event === 'submit') e.preventDefault();
    Promise.resolve().then(() => handler(e)).catch(fail);
  });
}

function start() {
  on('signin-form', 'submit', async () => {
    const box = $('connection-string');
    const error = $('signin-error');
    error.textContent = '';
    try {
      await signIn(box.value);
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    box.value = '';
    $('who').textContent = `${session.policy} @ ${session.host}`;
    show('signin', false);
    show('app', true);
    show('signout', true);
    showView('devices');
    await loadDevices();
  });
  // Signing out forgets the key with everything else this page held.
  on('signout', 'click', () => location.reload());
  for (const b of document.querySelectorAll('nav button')) {
    b.addEventListener('click', () => {
      showView(b.dataset.view);
      if (b.dataset.view === 'devices') loadDevices().catch(fail);
    });
  }
  on('search-form', 'submit', async () => {
    Object.assign(list, { search: $('search').value.trim(), pages: [''], index: 0 });
    await loadDevices();
  });
  on('devices-next', 'click', async () => {
    if (!list.next) return;
    list.pages[list.index + 1] = list.next;
    list.index++;
    await loadDevices();
  });
  on('devices-prev', 'click', async () => {
    if (list.index === 0) return;
    list.index--;
    await loadDevices();
  });
  on('create-device-form', 'submit', async () => {
    const deviceId = $('new-device-id').value.trim();
    const device = { deviceId, status: 'enabled' };
    if ($('new-device-edge').checked) device.capabilities = { iotEdge: true };
    await call('PUT', `/devices/${enc(deviceId)}`, { body: device });
    $('new-device-id').value = '';
    await openDevice(deviceId);
    say(`Device ${deviceId} created.`);
  });
  on('back', 'click', async () => {
    showView('devices');
    await loadDevices();
  });
  on('copy-device-connection-string', 'click', () => copy($('device-connection-string').value, 'Device connection string'));
  on('toggle-status', 'click', toggleStatus);
  on('delete-device', 'click', deleteDevice);
  on('create-module-form', 'submit', async () => {
    const moduleId = $('new-module-id').value.trim();
    await call('PUT', `/devices/${enc(current.deviceId)}/modules/${enc(moduleId)}`, { body: { deviceId: current.deviceId, moduleId } });
    $('new-module-id').value = '';
    await loadModules();
    say(`Module ${moduleId} created.`);
  });
  on('twin-save', 'click', saveTwin);
  on('twin-reload', 'click', async () => {
    await loadTwin();
    $('twin-message').className = '';
    $('twin-message').textContent = 'Reloaded.';
  });
  on('method-form', 'submit', invokeMethod);
  on('c2d-form', 'submit', sendC2D);
  on('telemetry-toggle', 'click', watchTelemetry);
  on('query-form', 'submit', async () => {
    queryState.text = $('query-text').value;
    await runQuery('');
  });
  on('query-next', 'click', () => runQuery(queryState.next));
}

start();
