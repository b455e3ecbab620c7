'use strict';
// The device side through azure-iot-device with azure-iot-device-mqtt and
// azure-iot-device-amqp: Client over Mqtt, MqttWs, Amqp and AmqpWs
// (getTwin, reported updates, desired-property events, a cleared desired
// section), ModuleClient over Mqtt and Amqp, takeover across transports,
// and the connection state the back end sees. Address 127.0.0.41.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');
const { Client, ModuleClient, SharedAccessKeyAuthenticationProvider, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const { startHub } = require('./lib/hub');
const { uniqueId, printOutputOnFailure, TIME, sleep, reportedUpdate } = require('./lib/util');

// nextEvent resolves with the first event of that name whose argument
// satisfies match, or rejects after ms.
function nextEvent(emitter, name, match, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(name, on);
      reject(new Error(`no matching ${name} event within ${ms} ms`));
    }, ms);
    function on(arg) {
      if (!match(arg)) return;
      clearTimeout(timer);
      emitter.removeListener(name, on);
      resolve(arg);
    }
    emitter.on(name, on);
  });
}

// waitFor polls cond until it holds, for up to ms.
async function waitFor(cond, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('devices over MQTT and AMQP', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.41', mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function connectionState(id) {
    return (await registry.get(id)).responseBody;
  }

  for (const [name, Transport] of [['Mqtt', Mqtt], ['MqttWs', MqttWs], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) {
    it(`${name}: getTwin, reported update, desired events, connection state`, async () => {
      const id = uniqueId(name.toLowerCase());
      await registry.create({ deviceId: id });
      const client = Client.fromConnectionString(hub.deviceConnectionString(id), Transport);
      try {
        await client.open();
        const twin = await client.getTwin();
        assert.equal(twin.properties.desired.$version, 1);
        assert.equal(twin.properties.reported.$version, 1);
        // Listening for desired changes subscribes to them. The reported
        // update's round trip below comes after that SUBSCRIBE on the same
        // connection, so the hub has it before the back end changes anything.
        twin.on('properties.desired', () => {});

        await reportedUpdate(twin, { connectivity: { type: 'cellular' }, firmware: '1.0' });
        const { responseBody: t } = await registry.getTwin(id);
        assert.deepEqual(t.properties.reported.connectivity, { type: 'cellular' });
        assert.equal(t.properties.reported.firmware, '1.0');
        assert.equal(t.properties.reported.$version, 2);
        assert.equal(t.connectionState, 'Connected');

        const dev = await connectionState(id);
        assert.equal(dev.connectionState, 'Connected');
        assert.match(dev.connectionStateUpdatedTime, TIME);
        assert.match(dev.lastActivityTime, TIME);
        assert.notEqual(dev.lastActivityTime, '0001-01-01T00:00:00Z');

        // Desired changes from the back end, in order, as patches with $version.
        const seen = nextEvent(twin, 'properties.desired', (d) => d.power_level === 2);
        await registry.updateTwin(id, { properties: { desired: { power_level: 1 } } }, '*');
        await registry.updateTwin(id, { properties: { desired: { power_level: 2, mode: 'eco' } } }, '*');
        const last = await seen;
        assert.equal(last.$version, 3);
        assert.equal(twin.properties.desired.power_level, 2);
        assert.equal(twin.properties.desired.mode, 'eco');

        // null removes a desired property on the device's copy too.
        const removed = nextEvent(twin, 'properties.desired', (d) => d.$version === 4);
        await registry.updateTwin(id, { properties: { desired: { mode: null } } }, '*');
        await removed;
        assert.equal(twin.properties.desired.mode, undefined);

        // "desired": null clears the section: the device's copy loses
        // every desired property.
        const cleared = nextEvent(twin, 'properties.desired', (d) => d.$version === 5);
        await registry.updateTwin(id, { properties: { desired: null } }, '*');
        await cleared;
        assert.equal(twin.properties.desired.power_level, undefined);

        // A second read sees what the device reported.
        const again = await client.getTwin();
        assert.equal(again.properties.reported.firmware, '1.0');
      } finally {
        await client.close();
      }
      await waitFor(async () => (await connectionState(id)).connectionState === 'Disconnected', 'Disconnected after close');
    });
  }

  it('token renewal: the SDK reconnects without subscribing again, and the twin keeps working', async () => {
    // Tokens valid 6 s, renewed 3 s before expiry: a reconnect (CleanSession
    // 0, new password, no SUBSCRIBE) every 3 s instead of every 45 min.
    const id = uniqueId('renew');
    await registry.create({ deviceId: id });
    const auth = SharedAccessKeyAuthenticationProvider.fromConnectionString(hub.deviceConnectionString(id), 6, 3);
    const client = Client.fromAuthenticationProvider(auth, Mqtt);
    try {
      await client.open();
      const twin = await client.getTwin();
      twin.on('properties.desired', () => {});
      await reportedUpdate(twin, { before: true });
      await sleep(7000); // two renewals
      const seen = nextEvent(twin, 'properties.desired', (d) => d.after === 'renewal');
      await registry.updateTwin(id, { properties: { desired: { after: 'renewal' } } }, '*');
      await seen;
      await reportedUpdate(twin, { after: true });
      const { responseBody: t } = await registry.getTwin(id);
      assert.equal(t.properties.reported.after, true);
      assert.equal(t.connectionState, 'Connected');
    } finally {
      await client.close();
    }
  });

  for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) {
    it(`ModuleClient over ${name}: its own twin, not the device's`, async () => {
      const id = uniqueId(`mod-${name.toLowerCase()}`);
      await registry.create({ deviceId: id });
      await hub.createModule(id, 'sensor');
      const client = ModuleClient.fromConnectionString(hub.moduleConnectionString(id, 'sensor'), Transport);
      try {
        await client.open();
        const twin = await client.getTwin();
        twin.on('properties.desired', () => {});
        await reportedUpdate(twin, { temperature: 21.5 });
        const seen = nextEvent(twin, 'properties.desired', (d) => d.interval === 30);
        await registry.updateModuleTwin(id, 'sensor', { properties: { desired: { interval: 30 } } }, '*');
        await seen;

        const { responseBody: mt } = await registry.getModuleTwin(id, 'sensor');
        assert.equal(mt.properties.reported.temperature, 21.5);
        assert.equal(mt.connectionState, 'Connected');
        const { responseBody: dt } = await registry.getTwin(id);
        assert.equal(dt.properties.reported.temperature, undefined);
        assert.equal(dt.connectionState, 'Disconnected');
      } finally {
        await client.close();
      }
    });
  }

  it('a reported update the hub refuses fails with the hub\'s message', async () => {
    const id = uniqueId('refused-patch');
    await registry.create({ deviceId: id });
    const client = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    try {
      await client.open();
      const twin = await client.getTwin();
      await assert.rejects(reportedUpdate(twin, { 'a.b': 1 }), (err) => {
        assert.match(err.message, /a\.b/);
        return true;
      });
      await assert.rejects(reportedUpdate(twin, { big: 'x'.repeat(5000) }));
      const { responseBody: t } = await registry.getTwin(id);
      assert.equal(t.properties.reported.$version, 1);
      // The connection is still good.
      await reportedUpdate(twin, { ok: true });
    } finally {
      await client.close();
    }
  });

  // A device has one connection, whatever the transport: the newer one
  // stays. Over AMQP a device is connected from its first link, here its
  // telemetry's.
  for (const [a, A, b, B] of [['Mqtt', Mqtt, 'MqttWs', MqttWs], ['Mqtt', Mqtt, 'Amqp', Amqp],
    ['Amqp', Amqp, 'Mqtt', Mqtt], ['Amqp', Amqp, 'AmqpWs', AmqpWs]]) {
    it(`a second connection of the same device (${a}, then ${b}) replaces the first, and the device stays Connected`, async () => {
      const id = uniqueId('twice');
      await registry.create({ deviceId: id });
      const first = Client.fromConnectionString(hub.deviceConnectionString(id), A);
      const second = Client.fromConnectionString(hub.deviceConnectionString(id), B);
      try {
        await first.open();
        await first.sendEvent(new Message('from the first'));
        // The client emits no 'disconnect' for a clean close by the hub
        // when no feature needs reconnecting; its transport does.
        const disconnected = new Promise((resolve) => first._transport.once('disconnect', resolve));
        await second.open();
        await second.sendEvent(new Message('from the second'));
        await Promise.race([disconnected, sleep(10000).then(() => assert.fail('the first connection was not closed'))]);
        await sleep(200);
        assert.equal((await connectionState(id)).connectionState, 'Connected');
        const twin = await second.getTwin();
        await reportedUpdate(twin, { by: 'second' });
      } finally {
        await first.close().catch(() => {});
        await second.close();
      }
    });
  }
});
