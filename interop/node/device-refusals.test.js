'use strict';
// What the device endpoint refuses. Through azure-iot-device over Mqtt,
// MqttWs, Amqp and AmqpWs: wrong key, expired token, disabled and unknown
// devices (the CONNACK or the $cbs put-token refuses; nothing changes). Through mqtt.js, the MQTT client inside azure-iot-device-mqtt,
// for what the SDK never sends: another device's topics, an oversize
// packet, QoS 2 and retained publishes (the connection is closed, or the
// SUBACK says 0x80). Address 127.0.0.44.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
// mqtt.js is azure-iot-device-mqtt's own dependency (pinned by the lock file).
const mqtt = require('mqtt');

const { startHub } = require('./lib/hub');
const { uniqueId, printOutputOnFailure, sleep } = require('./lib/util');

// sasToken signs a device token the way azure-iot-device does.
function sasToken(host, id, key, expiry) {
  const sr = encodeURIComponent(`${host}/devices/${id}`);
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${expiry}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expiry}`;
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

describe('device endpoint refusals', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.44', mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function newDevice(prefix, opts = {}) {
    const id = uniqueId(prefix);
    const { responseBody } = await registry.create({ deviceId: id, status: opts.disabled ? 'disabled' : 'enabled' });
    return { id, key: responseBody.authentication.symmetricKey.primaryKey };
  }

  // refused opens a client and expects the CONNACK refusal; the device
  // must stay as it was.
  async function refused(client, id) {
    const before = (await registry.get(id)).responseBody;
    await assert.rejects(client.open(), (err) => {
      assert.match(`${err.name}: ${err.message}`, /Unauthorized|Not authorized/i);
      return true;
    });
    await client.close().catch(() => {});
    const now = (await registry.get(id)).responseBody;
    assert.equal(now.connectionState, 'Disconnected');
    assert.equal(now.lastActivityTime, before.lastActivityTime);
    assert.equal(now.etag, before.etag);
  }

  for (const [name, Transport] of [['Mqtt', Mqtt], ['MqttWs', MqttWs], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) {
    it(`${name}: wrong key`, async () => {
      const { id } = await newDevice('wrongkey');
      const cs = `HostName=${hub.address};DeviceId=${id};SharedAccessKey=${crypto.randomBytes(32).toString('base64')}`;
      await refused(Client.fromConnectionString(cs, Transport), id);
    });

    it(`${name}: expired token`, async () => {
      const { id, key } = await newDevice('expired');
      const sas = sasToken(hub.address, id, key, Math.floor(Date.now() / 1000) - 60);
      await refused(Client.fromSharedAccessSignature(sas, Transport), id);
    });

    it(`${name}: disabled device`, async () => {
      const { id } = await newDevice('disabled', { disabled: true });
      await refused(Client.fromConnectionString(hub.deviceConnectionString(id), Transport), id);
    });
  }

  for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) {
    it(`${name}: disabling a connected device disconnects it, and it cannot come back`, async () => {
      const { id } = await newDevice('disable-live');
      const client = Client.fromConnectionString(hub.deviceConnectionString(id), Transport);
      try {
        await client.open();
        // A message, so that the device is connected over AMQP too (it is
        // from its first link).
        await client.sendEvent(new Message('before'));
        // The client emits no 'disconnect' for a close by the hub when no
        // feature needs reconnecting; its transport does.
        const gone = new Promise((resolve) => client._transport.once('disconnect', resolve));
        const { responseBody: dev } = await registry.get(id);
        await registry.update({ deviceId: id, status: 'disabled', authentication: dev.authentication });
        await Promise.race([gone, sleep(10000).then(() => assert.fail('still connected 10 s after being disabled'))]);
        assert.equal((await registry.get(id)).responseBody.connectionState, 'Disconnected');
      } finally {
        await client.close().catch(() => {});
      }
      await refused(Client.fromConnectionString(hub.deviceConnectionString(id), Transport), id);
    });
  }

  it('unknown device', async () => {
    const cs = `HostName=${hub.address};DeviceId=nobody-${Date.now()};SharedAccessKey=${crypto.randomBytes(32).toString('base64')}`;
    await assert.rejects(Client.fromConnectionString(cs, Mqtt).open(), /Unauthorized|Not authorized/i);
  });

  it('a token valid for one device does not connect another', async () => {
    const a = await newDevice('a');
    const b = await newDevice('b');
    const sas = sasToken(hub.address, a.id, a.key, inAnHour());
    const res = await rawConnect(b.id, sas).catch((err) => err);
    assert.ok(res instanceof Error, 'connected');
    assert.match(res.message, /Not authorized/i);
  });

  // --- raw MQTT ---

  function rawConnect(id, password = null, extra = {}) {
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(`mqtts://${hub.address}:8883`, {
        clientId: id,
        username: `${hub.address}/${id}/?api-version=2021-04-12`,
        password,
        protocolVersion: 4,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 10000,
        ...extra,
      });
      c.once('connect', () => resolve(c));
      c.once('error', (err) => { c.end(true); reject(err); });
    });
  }

  async function rawDevice(prefix) {
    const { id, key } = await newDevice(prefix);
    const client = await rawConnect(id, sasToken(hub.address, id, key, inAnHour()));
    return { id, client };
  }

  function closed(client, ms = 5000) {
    if (client.disconnected || !client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
      client.once('close', () => { clearTimeout(timer); resolve(); });
    });
  }

  it('subscriptions to another device\'s topics or outside IoT Hub\'s get 0x80', async () => {
    const other = await newDevice('other');
    const { id, client } = await rawDevice('subs');
    try {
      const granted = await new Promise((resolve, reject) => client.subscribe({
        [`devices/${id}/messages/devicebound/#`]: { qos: 1 },
        [`devices/${other.id}/messages/devicebound/#`]: { qos: 1 },
        'devices/+/messages/devicebound/#': { qos: 1 },
        '#': { qos: 0 },
        '$iothub/twin/res/#': { qos: 0 },
      }, (err, g) => (err ? reject(err) : resolve(g))));
      const byTopic = Object.fromEntries(granted.map((g) => [g.topic, g.qos]));
      assert.equal(byTopic[`devices/${id}/messages/devicebound/#`], 1);
      assert.equal(byTopic['$iothub/twin/res/#'], 0);
      assert.equal(byTopic[`devices/${other.id}/messages/devicebound/#`], 128);
      assert.equal(byTopic['devices/+/messages/devicebound/#'], 128);
      assert.equal(byTopic['#'], 128);
      assert.ok(client.connected, 'refused subscriptions do not end the connection');
    } finally {
      client.end(true);
    }
  });

  for (const [name, publish] of [
    ['telemetry as another device', (c, id, other) => c.publish(`devices/${other}/messages/events/`, '{}', { qos: 1 })],
    ['a topic outside IoT Hub\'s', (c) => c.publish('hello/world', '{}', { qos: 0 })],
    ['QoS 2', (c, id) => c.publish(`devices/${id}/messages/events/`, '{}', { qos: 2 })],
    ['a retained message', (c, id) => c.publish(`devices/${id}/messages/events/`, '{}', { qos: 1, retain: true })],
    ['a packet over 256 KB', (c, id) => c.publish(`devices/${id}/messages/events/`, Buffer.alloc(300 * 1024), { qos: 1 })],
  ]) {
    it(`publishing ${name} closes the connection`, async () => {
      const other = await newDevice('victim');
      const { id, client } = await rawDevice('pub');
      client.on('error', () => {});
      const gone = closed(client);
      publish(client, id, other.id);
      await gone;
      client.end(true);
      // The hub serves the device again right after.
      const { client: again } = await rawDevice('after');
      assert.ok(again.connected);
      again.end(true);
    });
  }

  it('a client that never sends CONNECT is dropped', async () => {
    const tls = require('node:tls');
    const sock = tls.connect({ host: hub.address, port: 8883 });
    await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
    const start = Date.now();
    await new Promise((resolve) => sock.once('close', resolve));
    const took = Date.now() - start;
    assert.ok(took < 20000, `closed after ${took} ms`);
    await sleep(0);
  });
});
