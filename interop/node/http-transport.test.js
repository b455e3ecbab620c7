'use strict';
// The device SDK's Http transport (azure-iot-device-http) against the
// hub's device HTTPS endpoints: sendEvent and sendEventBatch read back with
// `twinhub monitor-events`, and cloud-to-device messages sent with
// `twinhub c2d send` received by the transport's polling receiver
// (GET /devices/{id}/messages/devicebound) and completed, rejected or
// abandoned, with the feedback `twinhub c2d feedback` prints. Address
// 127.0.0.53.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');

const { startHub } = require('./lib/hub');
const { twinhubBin } = require('./lib/bin');
const { uniqueId, printOutputOnFailure } = require('./lib/util');

function events(stdout) {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// monitor runs `twinhub monitor-events --device id --from start --max max`
// and returns the events it printed; it stops the command after ms, so that
// fewer events than expected fail the assertions instead of hanging.
function monitor(hub, id, max, ms = 15000) {
  const args = ['--data', hub.dataDir, 'monitor-events', '--device', id, '--from', 'start', '--max', String(max)];
  return new Promise((resolve, reject) => {
    execFile(twinhubBin(), args, { encoding: 'utf8', timeout: ms }, (err, stdout, stderr) => {
      if (err && !err.killed) reject(new Error(`twinhub monitor-events failed: ${(stderr || err.message).trim()}`));
      else resolve(events(stdout));
    });
  });
}

// httpClient opens a device client over Http that polls for cloud-to-device
// messages every second (receivePolicy.interval is in seconds; drain, the
// default, fetches every waiting message at each poll). Errors the
// receiver emits are kept in client.errors instead of being thrown.
async function httpClient(hub, id) {
  const client = Client.fromConnectionString(hub.deviceConnectionString(id), Http);
  client.errors = [];
  client.on('error', (err) => client.errors.push(err));
  await client.setOptions({ http: { receivePolicy: { interval: 1 } } });
  await client.open();
  return client;
}

// Messages collects the cloud-to-device messages a client receives;
// next() resolves with the next one (or rejects after ms).
class Messages {
  constructor(client) {
    this.client = client;
    this.queue = [];
    this.waiters = [];
    this.onMessage = (msg) => {
      const w = this.waiters.shift();
      if (w) w(msg);
      else this.queue.push(msg);
    };
    client.on('message', this.onMessage);
  }

  next(ms = 10000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(done), 1);
        const errs = this.client.errors.map((e) => `${e.name}: ${e.message}` +
          (e.response ? ` (HTTP ${e.response.statusCode} ${e.responseBody || ''})` : '')).join('; ');
        reject(new Error(`no cloud-to-device message within ${ms} ms${errs ? `; receiver errors: ${errs}` : ''}`));
      }, ms);
      const done = (msg) => { clearTimeout(timer); resolve(msg); };
      this.waiters.push(done);
    });
  }

  stop() {
    this.client.removeListener('message', this.onMessage);
  }
}

describe('the Http device transport', () => {
  let hub;

  before(async () => {
    hub = await startHub({ address: '127.0.0.53', mqtt: false });
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  it('sendEvent over Http is stored with its system and application properties', async () => {
    const id = uniqueId('http');
    await hub.createDevice(id);
    const device = await httpClient(hub, id);
    try {
      const m = new Message(JSON.stringify({ temp: 21 }));
      m.messageId = 'mid-1';
      m.correlationId = 'cid-1';
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('alert', 'high temp');
      m.properties.add('level', '3');
      const res = await device.sendEvent(m);
      assert.equal(res.transportObj.statusCode, 204);
      await device.sendEvent(new Message('second'));
    } finally {
      await device.close();
    }

    const got = await monitor(hub, id, 2);
    assert.equal(got.length, 2);
    const [e, e2] = got;
    assert.equal(e.deviceId, id);
    assert.equal(e.body, '{"temp":21}');
    assert.equal(e.systemProperties['message-id'], 'mid-1');
    assert.equal(e.systemProperties['correlation-id'], 'cid-1');
    assert.equal(e.systemProperties['content-type'], 'application/json');
    assert.equal(e.systemProperties['content-encoding'], 'utf-8');
    assert.equal(e.systemProperties['iothub-connection-device-id'], id);
    assert.deepEqual(e.properties, { alert: 'high temp', level: '3' });
    assert.equal(e2.body, 'second');
    assert.deepEqual(e2.properties || {}, {});
  });

  it('cloud-to-device over Http: complete, reject, abandon and receive again, with feedback', async () => {
    const id = uniqueId('httpc2d');
    await hub.createDevice(id);
    // Feedback of earlier tests or runs would confuse the checks below.
    hub.cli('c2d', 'feedback');

    await hub.cliAsync('c2d', 'send', id, 'first', '--props', 'color=red/blue', '--message-id', 'h-1',
      '--correlation-id', 'corr-1', '--ack', 'full');
    await hub.cliAsync('c2d', 'send', id, 'second', '--message-id', 'h-2', '--ack', 'full');
    await hub.cliAsync('c2d', 'send', id, 'third', '--message-id', 'h-3', '--ack', 'full');

    const device = await httpClient(hub, id);
    const inbox = new Messages(device);
    try {
      const m1 = await inbox.next();
      assert.equal(m1.data.toString(), 'first');
      assert.equal(m1.messageId, 'h-1');
      assert.equal(m1.correlationId, 'corr-1');
      assert.equal(m1.to, `/devices/${id}/messages/deviceBound`);
      assert.ok(m1.expiryTimeUtc, 'iothub-expiry is set');
      assert.ok(m1.lockToken, 'the ETag gave a lock token');
      // The Http transport keeps application properties under their header
      // names (it does so against IoT Hub too).
      assert.equal(m1.properties.getValue('iothub-app-color'), 'red/blue');
      await device.complete(m1);

      const m2 = await inbox.next();
      assert.equal(m2.data.toString(), 'second');
      assert.equal(m2.messageId, 'h-2');
      await device.reject(m2);

      const m3 = await inbox.next();
      assert.equal(m3.data.toString(), 'third');
      assert.equal(m3.messageId, 'h-3');
      await device.abandon(m3);

      // Abandoned: the next poll hands it out again, with a lock token of its own.
      const again = await inbox.next();
      assert.equal(again.data.toString(), 'third');
      assert.equal(again.messageId, 'h-3');
      await device.complete(again);

      // A settled message's lock token is no longer good.
      await assert.rejects(device.complete(m1), (err) => {
        assert.equal(err.response && err.response.statusCode, 412, `got ${err.name}: ${err.message}`);
        return true;
      });

      // Nothing else comes.
      await assert.rejects(inbox.next(2500), /no cloud-to-device message/);
      assert.deepEqual(device.errors.map((e) => e.message), []);
    } finally {
      inbox.stop();
      await device.close();
    }

    const purged = JSON.parse(await hub.cliAsync('c2d', 'purge', id));
    assert.equal(purged.totalMessagesPurged, 0, 'the queue is empty');

    const feedback = JSON.parse(await hub.cliAsync('c2d', 'feedback'))
      .filter((r) => r.deviceId === id)
      .map((r) => [r.originalMessageId, r.statusCode])
      .sort();
    assert.deepEqual(feedback, [['h-1', 'Success'], ['h-2', 'Rejected'], ['h-3', 'Success']]);
  });

  // The transport posts the batch as one request, Content-Type
  // application/vnd.microsoft.iothub.json, body a JSON array of
  // {"body": <base64>, "properties": {"iothub-app-<name>": <value>}}; IoT Hub
  // stores each element as an event of its own.
  it('sendEventBatch over Http stores each message of the batch as an event', async () => {
    const id = uniqueId('httpbatch');
    await hub.createDevice(id);
    const device = await httpClient(hub, id);
    try {
      const batch = ['b0', 'b1', 'b2'].map((body, i) => {
        const m = new Message(body);
        m.properties.add('index', String(i));
        return m;
      });
      await device.sendEventBatch(batch);
    } finally {
      await device.close();
    }
    const got = await monitor(hub, id, 3, 5000);
    assert.deepEqual(got.map((e) => e.body), ['b0', 'b1', 'b2']);
    assert.deepEqual(got.map((e) => e.properties), [{ index: '0' }, { index: '1' }, { index: '2' }]);
  });
});
