'use strict';
// The identity registry through azure-iothub's Registry: create, get,
// update, delete, list, bulk create and statistics.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const {
  rejectsWith, uniqueId, printOutputOnFailure, TIME, ticks, isBase64Key, randomKey, sleep,
} = require('./lib/util');

const THUMB1 = '9A8B7C6D5E4F30211203F4E5D6C7B8A9F0E1D2C3';
const THUMB2 = '1122334455667788990011223344556677889900';

describe('registry', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.31' });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  // checkNewDevice asserts the fields every new device has.
  function checkNewDevice(d, id) {
    assert.equal(d.deviceId, id);
    assert.equal(typeof d.etag, 'string');
    assert.ok(d.etag.length > 0, 'etag is set');
    assert.equal(typeof d.generationId, 'string');
    assert.ok(d.generationId.length > 0, 'generationId is set');
    assert.equal(d.status, 'enabled');
    assert.equal(d.connectionState, 'Disconnected');
    assert.equal(d.cloudToDeviceMessageCount, 0);
    assert.match(d.statusUpdatedTime, TIME);
  }

  it('create without keys generates two different symmetric keys', async () => {
    const id = uniqueId('gen');
    const { responseBody: d, httpResponse } = await registry.create({ deviceId: id });
    assert.equal(httpResponse.statusCode, 200);
    checkNewDevice(d, id);
    assert.equal(d.authentication.type, 'sas');
    const { primaryKey, secondaryKey } = d.authentication.symmetricKey;
    assert.ok(isBase64Key(primaryKey), `primary key ${primaryKey} is a base64 key`);
    assert.ok(isBase64Key(secondaryKey), `secondary key ${secondaryKey} is a base64 key`);
    assert.notEqual(primaryKey, secondaryKey);
    assert.equal(d.capabilities.iotEdge, false);

    const { responseBody: got } = await registry.get(id);
    checkNewDevice(got, id);
    assert.deepEqual(got.authentication.symmetricKey, { primaryKey, secondaryKey });
    assert.equal(got.etag, d.etag);
    assert.equal(got.generationId, d.generationId);
  });

  it('create with given keys keeps them', async () => {
    const id = uniqueId('keys');
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const { responseBody: d } = await registry.create({
      deviceId: id, status: 'enabled', authentication: { symmetricKey: { ...keys } },
    });
    checkNewDevice(d, id);
    assert.equal(d.authentication.type, 'sas');
    assert.deepEqual(d.authentication.symmetricKey, keys);
    const { responseBody: got } = await registry.get(id);
    assert.deepEqual(got.authentication.symmetricKey, keys);
    // The key works: the hub's CLI builds the device connection string from it.
    assert.equal(hub.deviceConnectionString(id), `HostName=${hub.address};DeviceId=${id};SharedAccessKey=${keys.primaryKey}`);
  });

  it('create a self-signed X.509 device keeps its thumbprints and has no keys', async () => {
    const id = uniqueId('x509');
    const { responseBody: d } = await registry.create({
      deviceId: id,
      authentication: { x509Thumbprint: { primaryThumbprint: THUMB1, secondaryThumbprint: THUMB2 } },
    });
    checkNewDevice(d, id);
    assert.equal(d.authentication.type, 'selfSigned');
    assert.equal(d.authentication.x509Thumbprint.primaryThumbprint, THUMB1);
    assert.equal(d.authentication.x509Thumbprint.secondaryThumbprint, THUMB2);
    assert.ok(!d.authentication.symmetricKey.primaryKey, 'no primary key for an X.509 device');
    assert.ok(!d.authentication.symmetricKey.secondaryKey, 'no secondary key for an X.509 device');
    const { responseBody: got } = await registry.get(id);
    assert.equal(got.authentication.type, 'selfSigned');
    assert.equal(got.authentication.x509Thumbprint.primaryThumbprint, THUMB1);
    assert.equal(got.authentication.x509Thumbprint.secondaryThumbprint, THUMB2);
    const { responseBody: twin } = await registry.getTwin(id);
    assert.equal(twin.authenticationType, 'selfSigned');
    assert.equal(twin.x509Thumbprint.primaryThumbprint, THUMB1);
  });

  it('create an IoT Edge device', async () => {
    const id = uniqueId('edge');
    const { responseBody: d } = await registry.create({ deviceId: id, capabilities: { iotEdge: true } });
    checkNewDevice(d, id);
    assert.equal(d.capabilities.iotEdge, true);
    const { responseBody: got } = await registry.get(id);
    assert.equal(got.capabilities.iotEdge, true);
    const { responseBody: twin } = await registry.getTwin(id);
    assert.equal(twin.capabilities.iotEdge, true);
  });

  it('create a disabled device', async () => {
    const id = uniqueId('off');
    const { responseBody: d } = await registry.create({ deviceId: id, status: 'disabled', statusReason: 'not yet shipped' });
    assert.equal(d.status, 'disabled');
    assert.equal(d.statusReason, 'not yet shipped');
  });

  it('update disables a device, changes statusUpdatedTime and etag, keeps the keys', async () => {
    const id = uniqueId('upd');
    const { responseBody: created } = await registry.create({ deviceId: id });
    await sleep(20);
    const { responseBody: before } = await registry.get(id);
    before.status = 'disabled';
    before.statusReason = 'maintenance';
    const { responseBody: updated, httpResponse } = await registry.update(before);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(updated.deviceId, id);
    assert.equal(updated.status, 'disabled');
    assert.equal(updated.statusReason, 'maintenance');
    assert.ok(ticks(updated.statusUpdatedTime) > ticks(created.statusUpdatedTime),
      `statusUpdatedTime ${updated.statusUpdatedTime} is later than ${created.statusUpdatedTime}`);
    assert.notEqual(updated.etag, created.etag, 'the etag changes');
    assert.equal(updated.generationId, created.generationId, 'the generationId stays');
    assert.deepEqual(updated.authentication.symmetricKey, created.authentication.symmetricKey);

    const { responseBody: got } = await registry.get(id);
    assert.equal(got.status, 'disabled');
    assert.equal(got.statusUpdatedTime, updated.statusUpdatedTime);
    assert.equal(got.etag, updated.etag);
    const { responseBody: twin } = await registry.getTwin(id);
    assert.equal(twin.status, 'disabled');

    // Enabling it again moves statusUpdatedTime once more.
    got.status = 'enabled';
    const { responseBody: again } = await registry.update(got);
    assert.equal(again.status, 'enabled');
    assert.ok(ticks(again.statusUpdatedTime) > ticks(updated.statusUpdatedTime));
  });

  it('update with new keys replaces them', async () => {
    const id = uniqueId('rekey');
    const { responseBody: d } = await registry.create({ deviceId: id });
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    d.authentication.symmetricKey = { ...keys };
    const { responseBody: updated } = await registry.update(d);
    assert.deepEqual(updated.authentication.symmetricKey, keys);
    const { responseBody: got } = await registry.get(id);
    assert.deepEqual(got.authentication.symmetricKey, keys);
  });

  it('update of an unknown device is DeviceNotFoundError', async () => {
    await rejectsWith(registry.update({ deviceId: uniqueId('ghost'), status: 'disabled' }), 'DeviceNotFoundError');
  });

  it('delete removes the device; get then is DeviceNotFoundError', async () => {
    const id = uniqueId('del');
    await registry.create({ deviceId: id });
    const { httpResponse } = await registry.delete(id);
    assert.equal(httpResponse.statusCode, 204);
    const err = await rejectsWith(registry.get(id), 'DeviceNotFoundError');
    assert.equal(err.response.statusCode, 404);
    await rejectsWith(registry.getTwin(id), 'DeviceNotFoundError');
    await rejectsWith(registry.delete(id), 'DeviceNotFoundError', 'deleting it again');
    // The id is free again, and a device created under it is a new one.
    const { responseBody: again } = await registry.create({ deviceId: id });
    checkNewDevice(again, id);
  });

  it('list sees the devices', async () => {
    const ids = [uniqueId('list'), uniqueId('list'), uniqueId('list')];
    for (const id of ids) await registry.create({ deviceId: id });
    const { responseBody: devices, httpResponse } = await registry.list();
    assert.equal(httpResponse.statusCode, 200);
    assert.ok(Array.isArray(devices));
    const byId = new Map(devices.map((d) => [d.deviceId, d]));
    for (const id of ids) {
      assert.ok(byId.has(id), `list has ${id}`);
      assert.equal(byId.get(id).status, 'enabled');
      assert.ok(isBase64Key(byId.get(id).authentication.symmetricKey.primaryKey));
    }
    assert.equal(byId.size, devices.length, 'no device is listed twice');
  });

  it('create twice is DeviceAlreadyExistsError, and the first device is untouched', async () => {
    const id = uniqueId('twice');
    const { responseBody: first } = await registry.create({ deviceId: id });
    const err = await rejectsWith(registry.create({ deviceId: id }), 'DeviceAlreadyExistsError');
    assert.equal(err.response.statusCode, 409);
    const { responseBody: got } = await registry.get(id);
    assert.deepEqual(got.authentication.symmetricKey, first.authentication.symmetricKey);
    assert.equal(got.etag, first.etag);
  });

  it('get of an unknown device is DeviceNotFoundError', async () => {
    const err = await rejectsWith(registry.get(uniqueId('nobody')), 'DeviceNotFoundError');
    assert.equal(err.response.statusCode, 404);
  });

  it('device ids are case-sensitive', async () => {
    const id = uniqueId('CaSe');
    await registry.create({ deviceId: id });
    await rejectsWith(registry.get(id.toLowerCase()), 'DeviceNotFoundError');
    const { responseBody: lower } = await registry.create({ deviceId: id.toLowerCase() });
    assert.equal(lower.deviceId, id.toLowerCase());
  });

  it('ids with every special character IoT Hub allows round-trip', async () => {
    const id = `sp-${process.pid}-+%_#*?!(),:=@$'.end`;
    const { responseBody: d } = await registry.create({ deviceId: id });
    assert.equal(d.deviceId, id);
    const { responseBody: got } = await registry.get(id);
    assert.equal(got.deviceId, id);
    const { responseBody: twin } = await registry.updateTwin(id, { tags: { odd: true } }, '*');
    assert.equal(twin.deviceId, id);
    assert.deepEqual(twin.tags, { odd: true });
    await registry.delete(id);
    await rejectsWith(registry.get(id), 'DeviceNotFoundError');
  });

  it('an id of 128 characters is allowed', async () => {
    const id = ('len128-' + 'x'.repeat(128)).slice(0, 128);
    const { responseBody: d } = await registry.create({ deviceId: id });
    assert.equal(d.deviceId, id);
  });

  for (const [what, id] of [
    ['a space', 'has space'],
    ['a slash', 'a/b'],
    ['a non-ASCII letter', 'caf\u00e9'],
    ['129 characters', 'y'.repeat(129)],
    ['a backslash', 'back\\slash'],
    ['a double quote', 'quo"te'],
  ]) {
    it(`an invalid device id (${what}) is ArgumentError and creates nothing`, async () => {
      const err = await rejectsWith(registry.create({ deviceId: id }), 'ArgumentError');
      assert.equal(err.response.statusCode, 400);
      const { responseBody: devices } = await registry.list();
      assert.ok(!devices.some((d) => d.deviceId === id), 'nothing was created');
    });
  }

  it('addDevices creates three devices at once', async () => {
    const ids = [uniqueId('bulk'), uniqueId('bulk'), uniqueId('bulk')];
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const { responseBody: result, httpResponse } = await registry.addDevices([
      { deviceId: ids[0] },
      { deviceId: ids[1], status: 'disabled' },
      { deviceId: ids[2], authentication: { symmetricKey: { ...keys } } },
    ]);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(result.isSuccessful, true);
    assert.deepEqual(result.errors, []);
    for (const id of ids) {
      const { responseBody: d } = await registry.get(id);
      assert.equal(d.deviceId, id);
      assert.ok(isBase64Key(d.authentication.symmetricKey.primaryKey), `${id} has a generated or given key`);
    }
    assert.equal((await registry.get(ids[1])).responseBody.status, 'disabled');
    assert.deepEqual((await registry.get(ids[2])).responseBody.authentication.symmetricKey, keys);
  });

  it('addDevices with one duplicate reports that device as an error', async () => {
    const ids = [uniqueId('bulkdup'), uniqueId('bulkdup'), uniqueId('bulkdup')];
    await registry.addDevices(ids.map((deviceId) => ({ deviceId })));
    const { responseBody: before } = await registry.get(ids[1]);
    const fresh = uniqueId('bulknew');
    // IoT Hub answers 400 with a BulkRegistryOperationResult body when
    // some entries fail; the SDK turns the 400 into an ArgumentError.
    const err = await rejectsWith(registry.addDevices([{ deviceId: fresh }, { deviceId: ids[1] }]), 'ArgumentError');
    assert.equal(err.response.statusCode, 400);
    const result = JSON.parse(err.responseBody);
    assert.equal(result.isSuccessful, false);
    assert.equal(result.errors.length, 1, `one error: ${err.responseBody}`);
    assert.equal(result.errors[0].deviceId, ids[1]);
    assert.equal(result.errors[0].errorCode, 409001, 'errorCode is the number of DeviceAlreadyExists');
    assert.equal(typeof result.errors[0].errorStatus, 'string');
    // The duplicate is untouched.
    const { responseBody: after } = await registry.get(ids[1]);
    assert.equal(after.etag, before.etag);
    assert.deepEqual(after.authentication.symmetricKey, before.authentication.symmetricKey);
  });

  it('getRegistryStatistics counts devices by status', async () => {
    const count = async () => (await registry.getRegistryStatistics()).responseBody;
    const { responseBody: devices } = await registry.list();
    const stats0 = await count();
    assert.equal(stats0.totalDeviceCount, devices.length);
    assert.equal(stats0.enabledDeviceCount, devices.filter((d) => d.status === 'enabled').length);
    assert.equal(stats0.disabledDeviceCount, devices.filter((d) => d.status === 'disabled').length);

    await registry.addDevices([
      { deviceId: uniqueId('stat') }, { deviceId: uniqueId('stat') }, { deviceId: uniqueId('stat'), status: 'disabled' },
    ]);
    const stats1 = await count();
    assert.equal(stats1.totalDeviceCount, stats0.totalDeviceCount + 3);
    assert.equal(stats1.enabledDeviceCount, stats0.enabledDeviceCount + 2);
    assert.equal(stats1.disabledDeviceCount, stats0.disabledDeviceCount + 1);

    // Modules are not devices.
    const withModule = uniqueId('stat');
    await registry.create({ deviceId: withModule });
    await registry.addModule({ deviceId: withModule, moduleId: 'm1' });
    const stats2 = await count();
    assert.equal(stats2.totalDeviceCount, stats1.totalDeviceCount + 1);
  });
});
