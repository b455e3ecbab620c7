'use strict';
// "Get started with device twins", end to end, with the official Node.js
// SDKs as the tutorial uses them: the back end (azure-iothub) tags a device
// and sets a desired property and queries for it; the device app
// (azure-iot-device over Mqtt, Amqp and AmqpWs, a hub each) reads its twin,
// reports its connectivity and receives the desired change; the back end's
// queries then find it. Address 127.0.0.42.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const { startHub } = require('./lib/hub');
const { printOutputOnFailure, queryAll, reportedUpdate } = require('./lib/util');

const PLANT_QUERY = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'";
const CELLULAR_QUERY = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity = 'cellular'";

for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) describe(`tutorial: get started with device twins (device over ${name})`, () => {
  let hub;
  let registry;
  const deviceId = 'myDeviceId';

  before(async () => {
    hub = await startHub({ address: '127.0.0.42', mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId });
    // A device elsewhere, which no query of the tutorial may find.
    await registry.create({ deviceId: 'elsewhere' });
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function found(sql) {
    const { items } = await queryAll(registry, sql, 100, true);
    return items.map((t) => t.deviceId);
  }

  it('the back end adds tags and a desired property, and queries', async () => {
    const { responseBody: twin } = await registry.getTwin(deviceId);
    await twin.update({
      tags: { location: { region: 'US', plant: 'Redmond43' } },
      properties: { desired: { power_level: 1 } },
    });
    assert.deepEqual(await found(PLANT_QUERY), [deviceId]);
    assert.deepEqual(await found(CELLULAR_QUERY), []);
  });

  it('the device app reports its connectivity and receives the desired change', async () => {
    const client = Client.fromConnectionString(hub.deviceConnectionString(deviceId), Transport);
    try {
      await client.open();
      const twin = await client.getTwin();
      assert.equal(twin.properties.desired.power_level, 1);

      const changes = [];
      twin.on('properties.desired', (delta) => changes.push(delta));
      await reportedUpdate(twin, { connectivity: 'cellular' });

      // The back end changes the desired property while the device is online.
      const { responseBody: backEndTwin } = await registry.getTwin(deviceId);
      await backEndTwin.update({ properties: { desired: { power_level: 5 } } });
      const deadline = Date.now() + 10000;
      while (!changes.some((d) => d.power_level === 5)) {
        if (Date.now() > deadline) assert.fail(`no desired change within 10 s; got ${JSON.stringify(changes)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const patch = changes.find((d) => d.power_level === 5);
      assert.equal(patch.$version, 3);
      assert.equal(twin.properties.desired.power_level, 5);
    } finally {
      await client.close();
    }
  });

  it('both queries then find the device, with what it reported', async () => {
    assert.deepEqual(await found(PLANT_QUERY), [deviceId]);
    const { items } = await queryAll(registry, CELLULAR_QUERY, 100, true);
    assert.deepEqual(items.map((t) => t.deviceId), [deviceId]);
    assert.equal(items[0].properties.reported.connectivity, 'cellular');
    assert.equal(items[0].properties.desired.power_level, 5);
    assert.equal(items[0].tags.location.region, 'US');
  });
});
