'use strict';
// State survives a restart of the hub: identities, keys, twins with their
// versions, etags and metadata, modules, the query index and the policies.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry, Client: ServiceClient } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const { startHub } = require('./lib/hub');
const { rejectsWith, uniqueId, printOutputOnFailure, queryAll, sleep, reportedUpdate } = require('./lib/util');

describe('restart', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.36', mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  it('devices, twins, modules and the query index are the same after hub.restart()', async () => {
    const id = uniqueId('keep');
    const gone = uniqueId('gone');
    const off = uniqueId('off');
    await registry.create({ deviceId: id });
    await registry.create({ deviceId: gone });
    await registry.create({ deviceId: off, status: 'disabled' });
    await registry.delete(gone);
    await registry.updateTwin(id, {
      tags: { location: { region: 'US', plant: 'Redmond43' } },
      properties: { desired: { power_level: 1, nested: { a: 1, b: 2 } } },
    }, '*');
    await registry.updateTwin(id, { properties: { desired: { nested: { a: null } } } }, '*');
    await registry.addModule({ deviceId: id, moduleId: 'm1' });
    await registry.updateModuleTwin(id, 'm1', { tags: { role: 'filter' } }, '*');

    const { responseBody: device } = await registry.get(id);
    const { responseBody: twin } = await registry.getTwin(id);
    const { responseBody: module } = await registry.getModule(id, 'm1');
    const { responseBody: moduleTwin } = await registry.getModuleTwin(id, 'm1');
    const { responseBody: stats } = await registry.getRegistryStatistics();
    const connectionString = hub.connectionString;
    const deviceCS = hub.deviceConnectionString(id);

    await hub.restart();

    assert.equal(hub.connectionString, connectionString, 'the policies and host name are kept');
    assert.equal(hub.deviceConnectionString(id), deviceCS);
    // The Registry made before the restart keeps working.
    const { responseBody: device2 } = await registry.get(id);
    assert.deepEqual(device2, device);
    const { responseBody: twin2 } = await registry.getTwin(id);
    assert.deepEqual(twin2.toJSON(), twin.toJSON(), 'the twin is the same, metadata, versions and etag included');
    assert.deepEqual((await registry.getModule(id, 'm1')).responseBody, module);
    assert.deepEqual((await registry.getModuleTwin(id, 'm1')).responseBody.toJSON(), moduleTwin.toJSON());
    assert.deepEqual((await registry.getRegistryStatistics()).responseBody, stats);
    assert.equal((await registry.get(off)).responseBody.status, 'disabled');
    await rejectsWith(registry.get(gone), 'DeviceNotFoundError', 'a deleted device stays deleted');

    // The query index is rebuilt from the store.
    const { items } = await queryAll(registry, "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'", 10);
    assert.deepEqual(items.map((t) => t.deviceId), [id]);
    const { items: mods } = await queryAll(registry, "SELECT * FROM devices.modules WHERE tags.role = 'filter'", 10);
    assert.deepEqual(mods.map((t) => [t.deviceId, t.moduleId]), [[id, 'm1']]);

    // Versions and etags go on from where they were.
    const { responseBody: twin3 } = await registry.updateTwin(id, { properties: { desired: { power_level: 2 } } }, twin.etag);
    assert.equal(twin3.version, twin.version + 1);
    assert.equal(twin3.properties.desired.$version, twin.properties.desired.$version + 1);
    assert.notEqual(twin3.etag, twin.etag);
    // And the new device registry keeps refusing what it refused.
    await rejectsWith(registry.create({ deviceId: id }), 'DeviceAlreadyExistsError');
  });

  it('writes right before a restart are all there after it', async () => {
    const ids = Array.from({ length: 30 }, () => uniqueId('burst'));
    await registry.addDevices(ids.map((deviceId) => ({ deviceId })));
    await Promise.all(ids.map((id, i) => registry.updateTwin(id, { tags: { i } }, '*')));
    await hub.restart();
    for (const [i, id] of ids.entries()) {
      const { responseBody: t } = await registry.getTwin(id);
      assert.equal(t.tags.i, i);
      assert.equal(t.version, 2);
    }
  });

  it('a device connected across a restart resumes its MQTT session: methods and desired patches reach it without subscribing again', async () => {
    // The Node SDK connects with CleanSession=0 and, after its transport
    // reconnects, relies on the hub's session for its subscriptions.
    const id = uniqueId('session');
    await registry.create({ deviceId: id });
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    device.on('error', () => {});
    const desired = [];
    device.onDeviceMethod('ping', (req, res) => res.send(200, req.payload).catch(() => {}));
    await device.open();
    try {
      const twin = await device.getTwin();
      twin.on('properties.desired', (p) => desired.push(p));
      // The listener's SUBSCRIBE reaches the hub (which saves the session
      // before its SUBACK) before this round trip's PUBLISH; restarting
      // before that would test a session that never had the subscription.
      await reportedUpdate(twin, { before: 'restart' });
      const reconnected = new Promise((resolve) => device.once('connect', resolve));
      await hub.restart();
      await reconnected;
      const service = ServiceClient.fromConnectionString(hub.connectionString);
      const { result } = await service.invokeDeviceMethod(id, { methodName: 'ping', payload: 'after', responseTimeoutInSeconds: 15 });
      assert.equal(result.payload, 'after');
      await registry.updateTwin(id, { properties: { desired: { after: true } } }, '*');
      for (let i = 0; i < 100 && !desired.some((p) => p.after === true); i++) await sleep(100);
      assert.ok(desired.some((p) => p.after === true), `desired patches received: ${JSON.stringify(desired)}`);
    } finally {
      await device.close();
    }
  });

  it('a second restart in a row keeps everything too', async () => {
    const id = uniqueId('twice');
    await registry.create({ deviceId: id });
    const { responseBody: t } = await registry.updateTwin(id, { tags: { n: 1 } }, '*');
    await hub.restart();
    await hub.restart();
    const { responseBody: t2 } = await registry.getTwin(id);
    assert.deepEqual(t2.toJSON(), t.toJSON());
  });
});
