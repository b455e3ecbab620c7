'use strict';
// Module identities and module twins through azure-iothub's Registry.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const {
  rejectsWith, uniqueId, printOutputOnFailure, TIME, isBase64Key, randomKey, withoutMetadata, queryAll,
} = require('./lib/util');

describe('modules', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.34' });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function newDevice(prefix = 'mdev') {
    const id = uniqueId(prefix);
    await registry.create({ deviceId: id });
    return id;
  }

  // removeModuleObject calls removeModule(module, callback): the SDK's
  // promise form of removeModule(module) throws "Argument 'done' cannot be
  // falsy" before sending anything, so applications use the callback form.
  function removeModuleObject(module) {
    return new Promise((resolve, reject) => {
      registry.removeModule(module, (err, result, response) => (err ? reject(err) : resolve({ result, response })));
    });
  }

  it('addModule generates keys; getModule shows the same module', async () => {
    const deviceId = await newDevice();
    const { responseBody: m, httpResponse } = await registry.addModule({ deviceId, moduleId: 'sensor' });
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(m.deviceId, deviceId);
    assert.equal(m.moduleId, 'sensor');
    assert.equal(typeof m.etag, 'string');
    assert.ok(m.etag.length > 0);
    assert.equal(typeof m.generationId, 'string');
    assert.ok(m.generationId.length > 0);
    assert.equal(m.connectionState, 'Disconnected');
    assert.equal(m.authentication.type, 'sas');
    assert.ok(isBase64Key(m.authentication.symmetricKey.primaryKey));
    assert.ok(isBase64Key(m.authentication.symmetricKey.secondaryKey));
    assert.notEqual(m.authentication.symmetricKey.primaryKey, m.authentication.symmetricKey.secondaryKey);

    const { responseBody: got } = await registry.getModule(deviceId, 'sensor');
    assert.equal(got.deviceId, deviceId);
    assert.equal(got.moduleId, 'sensor');
    assert.equal(got.etag, m.etag);
    assert.equal(got.generationId, m.generationId);
    assert.deepEqual(got.authentication.symmetricKey, m.authentication.symmetricKey);
    // The module's own key, not the device's, is in its connection string.
    assert.equal(hub.moduleConnectionString(deviceId, 'sensor'),
      `HostName=${hub.address};DeviceId=${deviceId};ModuleId=sensor;SharedAccessKey=${m.authentication.symmetricKey.primaryKey}`);
  });

  it('addModule with given keys keeps them', async () => {
    const deviceId = await newDevice();
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const { responseBody: m } = await registry.addModule({ deviceId, moduleId: 'keyed', authentication: { symmetricKey: { ...keys } } });
    assert.deepEqual(m.authentication.symmetricKey, keys);
    assert.deepEqual((await registry.getModule(deviceId, 'keyed')).responseBody.authentication.symmetricKey, keys);
  });

  it('getModulesOnDevice lists the modules of that device only', async () => {
    const deviceId = await newDevice();
    const other = await newDevice();
    await registry.addModule({ deviceId, moduleId: 'm1' });
    await registry.addModule({ deviceId, moduleId: 'm2' });
    await registry.addModule({ deviceId: other, moduleId: 'm3' });
    const { responseBody: mods, httpResponse } = await registry.getModulesOnDevice(deviceId);
    assert.equal(httpResponse.statusCode, 200);
    assert.deepEqual(mods.map((m) => m.moduleId).sort(), ['m1', 'm2']);
    for (const m of mods) {
      assert.equal(m.deviceId, deviceId);
      assert.ok(isBase64Key(m.authentication.symmetricKey.primaryKey));
    }
    const { responseBody: none } = await registry.getModulesOnDevice(await newDevice());
    assert.deepEqual(none, []);
  });

  it('updateModule with the etag changes the keys and the etag; a stale etag is InvalidEtagError', async () => {
    const deviceId = await newDevice();
    const { responseBody: m } = await registry.addModule({ deviceId, moduleId: 'upd' });
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const changed = { ...m, authentication: { ...m.authentication, symmetricKey: { ...keys } } };
    const { responseBody: updated, httpResponse } = await registry.updateModule(changed);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(updated.moduleId, 'upd');
    assert.deepEqual(updated.authentication.symmetricKey, keys);
    assert.notEqual(updated.etag, m.etag, 'the etag changes');
    assert.equal(updated.generationId, m.generationId);
    assert.deepEqual((await registry.getModule(deviceId, 'upd')).responseBody.authentication.symmetricKey, keys);

    // m still carries the first etag.
    const err = await rejectsWith(registry.updateModule({ ...m }), 'InvalidEtagError');
    assert.equal(err.response.statusCode, 412);
    assert.deepEqual((await registry.getModule(deviceId, 'upd')).responseBody.authentication.symmetricKey, keys,
      'the refused update changed nothing');

    // Forced, the stale module is written.
    const { responseBody: forced } = await registry.updateModule({ ...m }, true);
    assert.deepEqual(forced.authentication.symmetricKey, m.authentication.symmetricKey);
  });

  it('a new module twin is at version 1 with empty sections', async () => {
    const deviceId = await newDevice();
    await registry.addModule({ deviceId, moduleId: 'tw' });
    const { responseBody: t, httpResponse } = await registry.getModuleTwin(deviceId, 'tw');
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(t.deviceId, deviceId);
    assert.equal(t.moduleId, 'tw');
    assert.equal(t.version, 1);
    assert.equal(typeof t.etag, 'string');
    assert.ok(t.tags === undefined || Object.keys(t.tags).length === 0);
    for (const section of ['desired', 'reported']) {
      assert.equal(t.properties[section].$version, 1);
      assert.match(t.properties[section].$metadata.$lastUpdated, TIME);
      assert.deepEqual(withoutMetadata(t.properties[section]), {});
    }
  });

  it('updateModuleTwin changes the module twin only; a stale etag is InvalidEtagError', async () => {
    const deviceId = await newDevice();
    await registry.addModule({ deviceId, moduleId: 'tw' });
    const { responseBody: before } = await registry.getModuleTwin(deviceId, 'tw');
    const { responseBody: deviceBefore } = await registry.getTwin(deviceId);
    const patch = { tags: { role: 'filter' }, properties: { desired: { threshold: 30, nested: { a: 1 } } } };
    const { responseBody: t, httpResponse } = await registry.updateModuleTwin(deviceId, 'tw', patch, before.etag);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(t.deviceId, deviceId);
    assert.equal(t.moduleId, 'tw');
    assert.equal(t.version, 2);
    assert.notEqual(t.etag, before.etag);
    assert.deepEqual(t.tags, { role: 'filter' });
    assert.deepEqual(withoutMetadata(t.properties.desired), { threshold: 30, nested: { a: 1 } });
    assert.equal(t.properties.desired.$version, 2);
    assert.equal(t.properties.desired.$metadata.threshold.$lastUpdatedVersion, 2);

    const { responseBody: deviceAfter } = await registry.getTwin(deviceId);
    assert.equal(deviceAfter.version, deviceBefore.version, 'the device twin is untouched');
    assert.equal(deviceAfter.etag, deviceBefore.etag);
    assert.deepEqual(withoutMetadata(deviceAfter.properties.desired), {});

    const err = await rejectsWith(registry.updateModuleTwin(deviceId, 'tw', { tags: { x: 1 } }, before.etag), 'InvalidEtagError');
    assert.equal(err.response.statusCode, 412);
    const { responseBody: after } = await registry.getModuleTwin(deviceId, 'tw');
    assert.equal(after.version, 2);
    assert.equal(after.etag, t.etag);

    // The Twin object of a module twin updates the module twin.
    const { responseBody: twinObj } = await registry.getModuleTwin(deviceId, 'tw');
    await twinObj.update({ properties: { desired: { nested: { b: 2 } } } });
    assert.deepEqual(withoutMetadata(twinObj.properties.desired), { threshold: 30, nested: { a: 1, b: 2 } });
    assert.equal((await registry.getModuleTwin(deviceId, 'tw')).responseBody.version, 3);
  });

  it('removeModule removes the module and its twin', async () => {
    const deviceId = await newDevice();
    await registry.addModule({ deviceId, moduleId: 'gone' });
    await registry.addModule({ deviceId, moduleId: 'stays' });
    const { httpResponse } = await registry.removeModule(deviceId, 'gone');
    assert.equal(httpResponse.statusCode, 204);
    // IoT Hub answers 404 ModuleNotFound, which azure-iothub turns into a
    // plain Error (it has a class for DeviceNotFound only).
    // One call at a time: a second promise made before the first is awaited
    // could reject first, unhandled, and node:test fails the test on it.
    for (const call of [() => registry.getModule(deviceId, 'gone'), () => registry.getModuleTwin(deviceId, 'gone')]) {
      let err;
      try { await call(); } catch (e) { err = e; }
      assert.ok(err, 'the module is gone');
      assert.equal(err.response.statusCode, 404);
      assert.match(err.responseBody, /ModuleNotFound/);
    }
    const { responseBody: mods } = await registry.getModulesOnDevice(deviceId);
    assert.deepEqual(mods.map((m) => m.moduleId), ['stays']);
    // The device is untouched.
    assert.equal((await registry.get(deviceId)).responseBody.deviceId, deviceId);
  });

  it('removeModule(module) uses its etag: a stale one is InvalidEtagError', async () => {
    const deviceId = await newDevice();
    const { responseBody: m } = await registry.addModule({ deviceId, moduleId: 'etagged' });
    await registry.updateModule({ ...m, authentication: { type: 'sas', symmetricKey: { primaryKey: randomKey(), secondaryKey: randomKey() } } });
    await rejectsWith(removeModuleObject(m), 'InvalidEtagError');
    const { responseBody: current } = await registry.getModule(deviceId, 'etagged');
    const { response } = await removeModuleObject(current);
    assert.equal(response.statusCode, 204);
    const { responseBody: mods } = await registry.getModulesOnDevice(deviceId);
    assert.deepEqual(mods, []);
  });

  it('addModule twice is DeviceAlreadyExistsError', async () => {
    const deviceId = await newDevice();
    const { responseBody: first } = await registry.addModule({ deviceId, moduleId: 'dup' });
    const err = await rejectsWith(registry.addModule({ deviceId, moduleId: 'dup' }), 'DeviceAlreadyExistsError');
    assert.equal(err.response.statusCode, 409);
    assert.equal((await registry.getModule(deviceId, 'dup')).responseBody.etag, first.etag);
  });

  it('addModule on an unknown device is DeviceNotFoundError', async () => {
    const err = await rejectsWith(registry.addModule({ deviceId: uniqueId('ghost'), moduleId: 'm' }), 'DeviceNotFoundError');
    assert.equal(err.response.statusCode, 404);
  });

  it('an invalid module id is ArgumentError', async () => {
    const deviceId = await newDevice();
    await rejectsWith(registry.addModule({ deviceId, moduleId: 'has space' }), 'ArgumentError');
    await rejectsWith(registry.addModule({ deviceId, moduleId: 'a/b' }), 'ArgumentError');
    await rejectsWith(registry.addModule({ deviceId, moduleId: 'z'.repeat(129) }), 'ArgumentError');
    assert.deepEqual((await registry.getModulesOnDevice(deviceId)).responseBody, []);
  });

  it('deleting a device deletes its modules', async () => {
    const deviceId = await newDevice();
    await registry.addModule({ deviceId, moduleId: 'a' });
    await registry.addModule({ deviceId, moduleId: 'b' });
    await registry.delete(deviceId);
    let err;
    try { await registry.getModule(deviceId, 'a'); } catch (e) { err = e; }
    assert.equal(err && err.response && err.response.statusCode, 404);
    const { items } = await queryAll(registry, `SELECT * FROM devices.modules WHERE deviceId = '${deviceId}'`, 100);
    assert.deepEqual(items, []);
    // A device created again under that id has no modules.
    await registry.create({ deviceId });
    assert.deepEqual((await registry.getModulesOnDevice(deviceId)).responseBody, []);
  });

  it('a device "x.y" and the module "y" of device "x" are different identities', async () => {
    const base = uniqueId('dot');
    await registry.create({ deviceId: base });
    await registry.create({ deviceId: `${base}.y` });
    await registry.addModule({ deviceId: base, moduleId: 'y' });
    await registry.updateTwin(`${base}.y`, { tags: { who: 'device' } }, '*');
    await registry.updateModuleTwin(base, 'y', { tags: { who: 'module' } }, '*');
    assert.deepEqual((await registry.getTwin(`${base}.y`)).responseBody.tags, { who: 'device' });
    assert.deepEqual((await registry.getModuleTwin(base, 'y')).responseBody.tags, { who: 'module' });
    assert.deepEqual((await registry.getModulesOnDevice(`${base}.y`)).responseBody, []);
  });

  it('SELECT * FROM devices.modules finds module twins with their moduleId', async () => {
    const deviceId = await newDevice('qmod');
    await registry.addModule({ deviceId, moduleId: 'qa' });
    await registry.addModule({ deviceId, moduleId: 'qb' });
    await registry.updateModuleTwin(deviceId, 'qa', { tags: { kind: 'camera' }, properties: { desired: { fps: 30 } } }, '*');

    const query = registry.createQuery(`SELECT * FROM devices.modules WHERE deviceId = '${deviceId}'`, 100);
    const { result: twins } = await query.nextAsTwin();
    assert.equal(query.hasMoreResults, false);
    assert.deepEqual(twins.map((t) => t.moduleId).sort(), ['qa', 'qb']);
    for (const t of twins) {
      assert.equal(t.deviceId, deviceId);
      assert.equal(typeof t.etag, 'string');
      assert.equal(typeof t.version, 'number');
    }
    const qa = twins.find((t) => t.moduleId === 'qa');
    assert.deepEqual(qa.tags, { kind: 'camera' });
    assert.equal(qa.properties.desired.fps, 30);

    const { items: filtered } = await queryAll(registry,
      `SELECT * FROM devices.modules WHERE moduleId = 'qa' AND properties.desired.fps = 30 AND deviceId = '${deviceId}'`, 100);
    assert.deepEqual(filtered.map((t) => [t.deviceId, t.moduleId]), [[deviceId, 'qa']]);

    // devices holds device twins only.
    const { items: devices } = await queryAll(registry, `SELECT * FROM devices WHERE deviceId = '${deviceId}'`, 100);
    assert.equal(devices.length, 1);
    assert.equal(devices[0].moduleId, undefined);

    // A module twin from a query can be updated through its Twin object.
    await qa.update({ properties: { desired: { fps: 60 } } });
    assert.equal((await registry.getModuleTwin(deviceId, 'qa')).responseBody.properties.desired.fps, 60);
  });
});
