'use strict';
// The web console (https://HOST/console) in a real browser: Debian's
// chromium driven by puppeteer-core, against a real hub, with the device
// SDK (azure-iot-device over Mqtt) as the device and azure-iothub as a
// second back end. Signs in (and fails to with wrong strings), creates a
// device, connects it with the connection string the page shows, sees it
// connected, edits its twin and hits an etag conflict, runs a query,
// watches its telemetry, invokes a method, sends a C2D message and sees
// its feedback, makes a module, disables and deletes the device; and a
// read-only policy is refused what it may not do. Screenshots of each step
// are kept in artifacts/console (or $TWINHUB_ARTIFACTS/console).
// Address 127.0.0.77.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const https = require('node:https');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const { startHub, testCA } = require('./lib/hub');
const { CHROMIUM, launchBrowser } = require('./lib/browser');
const { printOutputOnFailure, sleep, reportedUpdate } = require('./lib/util');

const ADDRESS = '127.0.0.77';
const ARTIFACTS = path.join(process.env.TWINHUB_ARTIFACTS || path.join(__dirname, 'artifacts'), 'console');
const WAIT_MS = 15000;

function get(url, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca: testCA().caPem }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

// Without chromium the suite is skipped, unless TWINHUB_REQUIRE_CLIENTS is
// set (.ci/run installs Debian's chromium and sets it): then it fails.
const noBrowser = !fs.existsSync(CHROMIUM) && !process.env.TWINHUB_REQUIRE_CLIENTS
  ? `no ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)` : false;

describe('web console in chromium', { skip: noBrowser }, () => {
  let hub;
  let browser;
  let page;
  let registry;
  let device; // the azure-iot-device client of the device made in the page
  const pageErrors = [];
  const deviceId = 'console-dev-1';

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    hub = await startHub({ address: ADDRESS, mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
    browser = await launchBrowser(ADDRESS, testCA().caPem);
    page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 1000 });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // Deleting asks with confirm(); the user says yes.
    page.on('dialog', (d) => d.accept());
    await page.goto(`https://${ADDRESS}/console/`);
  });
  after(async () => {
    if (device) await device.close().catch(() => {});
    if (browser) await browser.close();
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const textOf = (sel) => page.$eval(sel, (e) => e.textContent);
  // waitText waits until the element's text holds want.
  async function waitText(sel, want) {
    try {
      await page.waitForFunction((s, w) => {
        const e = document.querySelector(s);
        return e && e.textContent.includes(w);
      }, { timeout: WAIT_MS }, sel, want);
    } catch (err) {
      const have = await page.$eval(sel, (e) => e.textContent).catch(() => '(no such element)');
      throw new Error(`${sel} did not show ${JSON.stringify(want)} within ${WAIT_MS} ms; it shows ${JSON.stringify(have)}`);
    }
  }
  async function fill(sel, value) {
    await page.$eval(sel, (e) => { e.value = ''; });
    await page.type(sel, value);
  }
  async function signIn(connectionString) {
    await fill('#connection-string', connectionString);
    await page.click('#signin-form button[type=submit]');
  }
  async function openDevice(id) {
    await page.click('nav button[data-view=devices]');
    await fill('#search', id);
    // The rows of an earlier search go first, and the button clicked is
    // one of the rows the list shows once no load is under way (the tab's
    // own load, answered after this clearing, showed rows that the
    // search's answer then replaced: the button found was detached).
    await page.$eval('#device-table tbody', (b) => b.replaceChildren());
    await page.click('#search-form button');
    const button = await page.waitForSelector(`xpath/.//table[@id="device-table" and not(@aria-busy)]//button[text()="${id}"]`, { timeout: WAIT_MS });
    await button.click();
    await waitText('#device-title', id);
    await waitText('#twin-versions', 'etag');
  }

  it('serves the page with security headers', async () => {
    const res = await get(`https://${ADDRESS}/console/`);
    assert.equal(res.status, 200);
    assert.match(res.body, /<script type="module" src="console.js">/);
    assert.match(res.headers['content-security-policy'], /frame-ancestors 'none'/);
    assert.match(res.headers['content-security-policy'], /script-src 'self'/);
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    const js = await get(`https://${ADDRESS}/console/console.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type'], /javascript/);
    assert.equal((await get(`https://${ADDRESS}/console`)).status, 301);
    assert.equal((await get(`https://${ADDRESS}/console/`, 'POST')).status, 405);
    assert.equal((await get(`https://${ADDRESS}/console/nothing.js`)).status, 404);
  });

  it('shows an error for a wrong connection string, not a blank page', async () => {
    const wrongKey = hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${crypto.randomBytes(32).toString('base64')}`);
    await signIn(wrongKey);
    await waitText('#signin-error', 'The hub refused this connection string: 401');
    assert.equal(await page.$eval('#app', (e) => e.hidden), true);
    await shot('01-wrong-key');

    await signIn(hub.connectionString.replace(/;SharedAccessKey=[^;]+/, ''));
    await waitText('#signin-error', 'The connection string has no SharedAccessKey.');
    await signIn(`HostName=${ADDRESS};DeviceId=d1;SharedAccessKey=${crypto.randomBytes(32).toString('base64')}`);
    await waitText('#signin-error', 'This is a device connection string');
    await signIn('not a connection string');
    await waitText('#signin-error', 'is not Name=value');
    // The wrong strings are nowhere in the address.
    assert.equal(page.url(), `https://${ADDRESS}/console/`);
  });

  it('signs in, creates a device and shows its connection string', async () => {
    await signIn(hub.connectionString);
    await waitText('#who', `iothubowner @ ${ADDRESS}`);
    assert.equal(await page.$eval('#connection-string', (e) => e.value), '', 'the sign-in box is emptied');
    assert.equal(page.url(), `https://${ADDRESS}/console/`);

    await fill('#new-device-id', deviceId);
    await page.click('#create-device-form button');
    await waitText('#device-title', deviceId);
    await waitText('#message', `Device ${deviceId} created.`);
    const shown = await page.$eval('#device-connection-string', (e) => e.value);
    assert.equal(shown, hub.deviceConnectionString(deviceId));
    await shot('02-device-created');
  });

  it('lists the device connected once the device SDK connects with that string', async () => {
    const cs = await page.$eval('#device-connection-string', (e) => e.value);
    device = Client.fromConnectionString(cs, Mqtt);
    await device.open();
    await page.click('#back');
    await fill('#search', 'console-');
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      await page.click('#search-form button');
      await sleep(200);
      const row = await page.$$eval('#device-table tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
      if (row.length === 1 && row[0][0] === deviceId && row[0][2] === 'Connected') break;
      if (Date.now() > deadline) assert.fail(`the list did not show ${deviceId} connected: ${JSON.stringify(row)}`);
    }
    await shot('03-device-connected');
    await fill('#search', 'zzz');
    await page.click('#search-form button');
    await waitText('#devices-page', 'No device id starts with "zzz".');
  });

  it('edits the twin, and refuses a save over a change made elsewhere', async () => {
    const twin = await device.getTwin();
    const desired = [];
    twin.on('properties.desired', (d) => desired.push(d));
    await openDevice(deviceId);
    await page.$eval('#twin-editor', (e) => { e.value = JSON.stringify({ tags: { plant: 'Redmond43' }, desired: { power_level: 7 } }); });
    await page.click('#twin-save');
    await waitText('#twin-message', 'Saved: desired $version 2.');
    const deadline = Date.now() + WAIT_MS;
    while (!desired.some((d) => d.power_level === 7)) {
      if (Date.now() > deadline) assert.fail(`the device got no desired power_level 7: ${JSON.stringify(desired)}`);
      await sleep(50);
    }
    const { responseBody: stored } = await registry.getTwin(deviceId);
    assert.deepEqual(stored.tags, { plant: 'Redmond43' });

    // A back end changes the twin behind the page's back: the page's etag
    // is stale, and its save is refused with a message, not applied.
    await registry.updateTwin(deviceId, { tags: { owner: 'elsewhere' } }, '*');
    await page.$eval('#twin-editor', (e) => { e.value = JSON.stringify({ tags: { plant: 'Overwritten' }, desired: { power_level: 8 } }); });
    await page.click('#twin-save');
    await waitText('#twin-message', 'Not saved: the twin changed since it was read');
    await shot('04-twin-etag-conflict');
    const { responseBody: after } = await registry.getTwin(deviceId);
    assert.deepEqual(after.tags, { plant: 'Redmond43', owner: 'elsewhere' });
    assert.equal(after.properties.desired.power_level, 7);

    await page.click('#twin-reload');
    await waitText('#twin-message', 'Reloaded.');
    assert.deepEqual(JSON.parse(await page.$eval('#twin-editor', (e) => e.value)).tags, { plant: 'Redmond43', owner: 'elsewhere' });
    // The device's reported properties show as they are.
    await reportedUpdate(twin, { connectivity: 'cellular' });
    await page.click('#twin-reload');
    await waitText('#twin-reported', '"connectivity": "cellular"');
  });

  it('runs a query and shows the rows as a table', async () => {
    await page.click('nav button[data-view=query]');
    await fill('#query-text', "SELECT deviceId, tags.plant FROM devices WHERE tags.plant = 'Redmond43'");
    await page.click('#query-form button');
    await waitText('#query-count', 'Page 1: 1 row');
    const table = await page.$$eval('#query-table tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    assert.deepEqual(table, [['deviceId', 'plant'], [deviceId, 'Redmond43']]);
    await shot('05-query');
    await fill('#query-text', 'SELECT * FROM nowhere');
    await page.click('#query-form button');
    await waitText('#message', 'Query refused: 400');
  });

  it('shows the device\'s telemetry as it arrives', async () => {
    await openDevice(deviceId);
    await page.click('#telemetry-toggle');
    await waitText('#telemetry-log', 'Watching telemetry of');
    // "now" starts when the hub has set up the stream, which the page
    // cannot see: the device sends until one message shows.
    const deadline = Date.now() + WAIT_MS;
    for (let i = 0; ; i++) {
      const msg = new Message(JSON.stringify({ temperature: 20 + i }));
      msg.properties.add('alert', 'no');
      await device.sendEvent(msg);
      await sleep(300);
      const events = await page.$$eval('#telemetry-log li.event', (ls) => ls.map((l) => l.textContent));
      if (events.some((e) => e.includes('"temperature":') && e.includes('"alert":"no"'))) break;
      if (Date.now() > deadline) assert.fail(`no telemetry shown: ${JSON.stringify(events)}`);
    }
    await shot('06-telemetry');
    await page.click('#telemetry-toggle');
    await waitText('#telemetry-toggle', 'Watch telemetry');
  });

  it('invokes a direct method and shows the answer', async () => {
    device.onDeviceMethod('reboot', (req, res) => res.send(200, { rebooting: true, got: req.payload }));
    await fill('#method-name', 'reboot');
    await fill('#method-payload', '{"delay": 3}');
    await page.click('#method-form button');
    await waitText('#method-result', 'status 200');
    const shown = await textOf('#method-result');
    assert.deepEqual(JSON.parse(shown.slice(shown.indexOf('\n') + 1)), { rebooting: true, got: { delay: 3 } });
    // The device SDK leaves a method without a handler unanswered: the
    // hub's timeout answers, and the page says so.
    await fill('#method-name', 'nobodyListens');
    await fill('#method-timeout', '5');
    await page.click('#method-form button');
    await waitText('#method-result', 'Failed: 504');
    await shot('07-method');
  });

  it('sends a C2D message and shows its feedback', async () => {
    const received = new Promise((resolve) => {
      device.on('message', (msg) => {
        device.complete(msg, () => resolve(msg.getData().toString()));
      });
    });
    await fill('#c2d-body', 'hello from the console');
    await page.click('#c2d-form button');
    assert.equal(await received, 'hello from the console');
    await waitText('#c2d-log', 'feedback Success');
    await shot('08-c2d-feedback');
  });

  it('makes a module, disables and deletes the device', async () => {
    await fill('#new-module-id', 'mod1');
    await page.click('#create-module-form button');
    await waitText('#message', 'Module mod1 created.');
    const moduleCS = await page.$eval('#module-table .module-connection-string', (e) => e.value);
    assert.equal(moduleCS, hub.moduleConnectionString(deviceId, 'mod1'));

    // The device goes offline first: disabled, it would be cut off and
    // its SDK would retry until the end of the run.
    await device.close();
    device = null;
    await page.click('#toggle-status');
    await waitText('#message', `Device ${deviceId} is disabled.`);
    assert.equal((await registry.get(deviceId)).responseBody.status, 'disabled');
    await waitText('#toggle-status', 'Enable device');
    await shot('09-disabled');

    await page.click('#delete-device');
    await waitText('#message', `Device ${deviceId} deleted.`);
    await assert.rejects(registry.get(deviceId), (err) => err.name === 'DeviceNotFoundError');
  });

  it('refuses what the signed-in policy may not do, as the REST API does', async () => {
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    await signIn(hub.policyConnectionString('registryRead'));
    await waitText('#who', 'registryRead @');
    await fill('#new-device-id', 'not-allowed');
    await page.click('#create-device-form button');
    await waitText('#message', '401');
    await shot('10-read-only-refused');
    await assert.rejects(registry.get('not-allowed'), (err) => err.name === 'DeviceNotFoundError');
  });

  it('raised no script errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
