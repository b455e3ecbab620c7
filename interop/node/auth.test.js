'use strict';
// Service-side authorization: shared access policies, their rights, and
// SAS tokens that must be refused.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Registry, SharedAccessSignature, ConnectionString } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const { rejectsWith, uniqueId, printOutputOnFailure, randomKey } = require('./lib/util');

describe('service authorization', () => {
  let hub;
  let owner;
  let deviceId;

  before(async () => {
    hub = await startHub({ address: '127.0.0.35' });
    owner = Registry.fromConnectionString(hub.connectionString);
    deviceId = uniqueId('authdev');
    await owner.create({ deviceId });
    await owner.updateTwin(deviceId, { tags: { t: 1 }, properties: { desired: { d: 1 } } }, '*');
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  const policy = (name) => Registry.fromConnectionString(hub.policyConnectionString(name));

  // policyKeys reads a policy's keys from the hub's hub.json.
  function policyKeys(name) {
    const conf = JSON.parse(fs.readFileSync(path.join(hub.dataDir, 'hub.json'), 'utf8'));
    const p = conf.policies.find((x) => x.keyName === name);
    assert.ok(p, `hub.json has policy ${name}`);
    return p;
  }

  // withToken is a Registry that sends exactly this Authorization header.
  const withToken = (token) => new Registry({ host: hub.address, sharedAccessSignature: token });
  const seconds = () => Math.floor(Date.now() / 1000);

  it('the connection strings of the policies name the hub and the policy', () => {
    for (const name of ['iothubowner', 'service', 'device', 'registryRead', 'registryReadWrite']) {
      const cs = ConnectionString.parse(hub.policyConnectionString(name));
      assert.equal(cs.HostName, hub.address);
      assert.equal(cs.SharedAccessKeyName, name);
      assert.equal(cs.SharedAccessKey, policyKeys(name).primaryKey);
    }
    assert.equal(hub.policyConnectionString('iothubowner'), hub.connectionString);
  });

  it('a wrong key is UnauthorizedError for every kind of call', async () => {
    const bad = Registry.fromConnectionString(`HostName=${hub.address};SharedAccessKeyName=iothubowner;SharedAccessKey=${randomKey()}`);
    const calls = {
      get: () => bad.get(deviceId),
      create: () => bad.create({ deviceId: uniqueId('never') }),
      list: () => bad.list(),
      getTwin: () => bad.getTwin(deviceId),
      updateTwin: () => bad.updateTwin(deviceId, { tags: { hacked: true } }, '*'),
      query: () => bad.createQuery('SELECT * FROM devices').next(),
      statistics: () => bad.getRegistryStatistics(),
      delete: () => bad.delete(deviceId),
    };
    for (const [what, call] of Object.entries(calls)) {
      const err = await rejectsWith(call(), 'UnauthorizedError', what);
      assert.equal(err.response.statusCode, 401, what);
    }
    const { responseBody: t } = await owner.getTwin(deviceId);
    assert.equal(t.tags.hacked, undefined, 'nothing was written');
    assert.equal((await owner.get(deviceId)).responseBody.deviceId, deviceId, 'nothing was deleted');
  });

  it('an unknown policy name is UnauthorizedError', async () => {
    const key = policyKeys('iothubowner').primaryKey;
    const bad = Registry.fromConnectionString(`HostName=${hub.address};SharedAccessKeyName=nosuchpolicy;SharedAccessKey=${key}`);
    await rejectsWith(bad.get(deviceId), 'UnauthorizedError');
  });

  it("another policy's key under the owner's name is UnauthorizedError", async () => {
    const key = policyKeys('registryRead').primaryKey;
    const bad = Registry.fromConnectionString(`HostName=${hub.address};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`);
    await rejectsWith(bad.create({ deviceId: uniqueId('never') }), 'UnauthorizedError');
  });

  it('the secondary key of a policy works too', async () => {
    const key = policyKeys('iothubowner').secondaryKey;
    const reg = Registry.fromConnectionString(`HostName=${hub.address};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`);
    assert.equal((await reg.get(deviceId)).responseBody.deviceId, deviceId);
  });

  it('registryRead can read identities but not create, update or delete them', async () => {
    const reader = policy('registryRead');
    const { responseBody: d } = await reader.get(deviceId);
    assert.equal(d.deviceId, deviceId);
    const { responseBody: list } = await reader.list();
    assert.ok(list.some((x) => x.deviceId === deviceId));
    const { responseBody: stats } = await reader.getRegistryStatistics();
    assert.ok(stats.totalDeviceCount >= 1);

    const id = uniqueId('ro');
    const err = await rejectsWith(reader.create({ deviceId: id }), 'UnauthorizedError', 'create');
    assert.equal(err.response.statusCode, 401);
    await rejectsWith(owner.get(id), 'DeviceNotFoundError', 'the device was not created');
    await rejectsWith(reader.update({ ...d, status: 'disabled' }), 'UnauthorizedError', 'update');
    assert.equal((await owner.get(deviceId)).responseBody.status, 'enabled');
    await rejectsWith(reader.delete(deviceId), 'UnauthorizedError', 'delete');
    await rejectsWith(reader.addDevices([{ deviceId: uniqueId('ro') }]), 'UnauthorizedError', 'addDevices');
    await rejectsWith(reader.addModule({ deviceId, moduleId: 'nope' }), 'UnauthorizedError', 'addModule');
  });

  it('registryReadWrite can create and delete identities', async () => {
    const writer = policy('registryReadWrite');
    const id = uniqueId('rw');
    const { responseBody: d } = await writer.create({ deviceId: id });
    assert.equal(d.deviceId, id);
    await writer.delete(id);
    await rejectsWith(owner.get(id), 'DeviceNotFoundError');
  });

  it("'service' can read and update twins and query, but not manage identities", async () => {
    const service = policy('service');
    const { responseBody: t } = await service.getTwin(deviceId);
    assert.equal(t.deviceId, deviceId);
    assert.equal(t.tags.t, 1);
    assert.equal(t.properties.desired.d, 1);
    const { responseBody: t2 } = await service.updateTwin(deviceId, { properties: { desired: { d: 2 } } }, t.etag);
    assert.equal(t2.properties.desired.d, 2);
    const { result } = await service.createQuery(`SELECT * FROM devices WHERE deviceId = '${deviceId}'`).nextAsTwin();
    assert.deepEqual(result.map((x) => x.deviceId), [deviceId]);

    await rejectsWith(service.create({ deviceId: uniqueId('svc') }), 'UnauthorizedError', 'create');
    await rejectsWith(service.get(deviceId), 'UnauthorizedError', 'get (needs RegistryRead)');
    await rejectsWith(service.delete(deviceId), 'UnauthorizedError', 'delete');
  });

  it("'device' (DeviceConnect only) can do nothing on the service API", async () => {
    const dev = policy('device');
    await rejectsWith(dev.get(deviceId), 'UnauthorizedError', 'get');
    await rejectsWith(dev.getTwin(deviceId), 'UnauthorizedError', 'getTwin');
    await rejectsWith(dev.create({ deviceId: uniqueId('devpol') }), 'UnauthorizedError', 'create');
    await rejectsWith(dev.createQuery('SELECT * FROM devices').next(), 'UnauthorizedError', 'query');
  });

  it('a valid SAS token given as such works', async () => {
    const key = policyKeys('iothubowner').primaryKey;
    const sas = SharedAccessSignature.create(hub.address, 'iothubowner', key, seconds() + 600).toString();
    const reg = Registry.fromSharedAccessSignature(sas);
    assert.equal((await reg.get(deviceId)).responseBody.deviceId, deviceId);
  });

  it('an expired SAS token is UnauthorizedError', async () => {
    const key = policyKeys('iothubowner').primaryKey;
    const sas = SharedAccessSignature.create(hub.address, 'iothubowner', key, seconds() - 60).toString();
    const err = await rejectsWith(Registry.fromSharedAccessSignature(sas).get(deviceId), 'UnauthorizedError');
    assert.equal(err.response.statusCode, 401);
  });

  it('a SAS token for another hub is UnauthorizedError', async () => {
    const key = policyKeys('iothubowner').primaryKey;
    const sas = SharedAccessSignature.create('other-hub.example.net', 'iothubowner', key, seconds() + 600).toString();
    await rejectsWith(withToken(sas).get(deviceId), 'UnauthorizedError');
  });

  it('a SAS token with a tampered expiry or signature is UnauthorizedError', async () => {
    const key = policyKeys('iothubowner').primaryKey;
    const good = SharedAccessSignature.create(hub.address, 'iothubowner', key, seconds() + 600).toString();
    assert.equal((await withToken(good).get(deviceId)).responseBody.deviceId, deviceId, 'the untampered token works');
    const later = good.replace(/se=(\d+)/, (_, se) => `se=${Number(se) + 3600}`);
    assert.notEqual(later, good);
    await rejectsWith(withToken(later).get(deviceId), 'UnauthorizedError', 'a later expiry');
    const sig = SharedAccessSignature.parse(good).sig;
    const otherSig = encodeURIComponent(Buffer.alloc(32, 7).toString('base64'));
    await rejectsWith(withToken(good.replace(sig, otherSig)).get(deviceId), 'UnauthorizedError', 'another signature');
    await rejectsWith(withToken('SharedAccessSignature garbage').get(deviceId), 'UnauthorizedError', 'garbage');
  });

  it('a device key cannot call the service API', async () => {
    const { responseBody: d } = await owner.get(deviceId);
    const sas = SharedAccessSignature.create(hub.address, deviceId, d.authentication.symmetricKey.primaryKey, seconds() + 600).toString();
    await rejectsWith(withToken(sas).get(deviceId), 'UnauthorizedError');
  });
});
