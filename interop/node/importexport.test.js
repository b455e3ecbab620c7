'use strict';
// Import and export jobs through azure-iothub's Registry against Azurite:
// exportDevicesToBlob writes devices.txt (keys, tags, desired properties,
// edge scopes, modules) into a container named by its SAS URL, with or
// without keys; importDevicesFromBlob reads one (as the SDK's own
// end-to-end test writes it: CRLF lines, createOrUpdate and delete) and
// logs what it cannot apply to importErrors.log; getJob, listJobs,
// cancelJob; a container whose SAS does not let the hub write fails the
// job with a reason. Address 127.0.0.74 (the hub on 443, Azurite on 10000).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const { startAzurite } = require('./lib/azurite');
const { rejectsWith, uniqueId, printOutputOnFailure, randomKey, sleep } = require('./lib/util');

const ADDRESS = '127.0.0.74';

describe('import and export jobs', () => {
  let hub;
  let azurite;
  let registry;

  before(async () => {
    azurite = await startAzurite(ADDRESS);
    hub = await startHub({ address: ADDRESS });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
    if (azurite) azurite.stop();
  });
  printOutputOnFailure(() => hub);

  // container makes a container and returns its SAS URL.
  async function container(permissions = 'rwdl') {
    const name = uniqueId('c').toLowerCase().replace(/[^a-z0-9-]/g, '-');
    await azurite.blobService.getContainerClient(name).create();
    return { name, url: azurite.containerSasUrl(name, permissions) };
  }

  async function readBlob(containerName, blob) {
    const buf = await azurite.blobService.getContainerClient(containerName).getBlobClient(blob).downloadToBuffer();
    return buf.toString('utf8');
  }

  function jsonLines(text) {
    return text.split(/\r?\n/).filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
  }

  // finished polls getJob until the job has ended.
  async function finished(jobId) {
    for (let i = 0; i < 600; i++) {
      const job = await registry.getJob(jobId);
      if (['completed', 'failed', 'cancelled'].includes(job.status)) return job;
      await sleep(50);
    }
    throw new Error(`job ${jobId} did not end`);
  }

  it('exportDevicesToBlob writes every device and module with keys, tags and desired properties', async () => {
    const id = uniqueId('exp');
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    await registry.create({ deviceId: id, authentication: { symmetricKey: keys } });
    await registry.updateTwin(id, { tags: { location: { plant: 'Redmond43' } }, properties: { desired: { telemetryInterval: 30 } } }, '*');
    await registry.addModule({ deviceId: id, moduleId: 'sensor' });
    const { responseBody: edge } = await registry.create({ deviceId: uniqueId('gw'), capabilities: { iotEdge: true } });
    const leaf = uniqueId('leaf');
    await registry.create({ deviceId: leaf, deviceScope: edge.deviceScope });

    const out = await container();
    const created = await registry.exportDevicesToBlob(out.url, false);
    assert.ok(created.jobId, 'the created job has an id');
    assert.equal(created.type, 'export');
    const job = await finished(created.jobId);
    assert.equal(job.status, 'completed', job.failureReason);
    assert.equal(job.progress, 100);
    assert.ok(job.startTimeUtc && job.endTimeUtc);

    const lines = jsonLines(await readBlob(out.name, 'devices.txt'));
    const find = (deviceId, moduleId) => lines.find((l) => l.id === deviceId && (l.moduleId || undefined) === moduleId);
    const d = find(id);
    assert.ok(d, `${id} is exported`);
    assert.deepEqual(d.authentication.symmetricKey, keys);
    assert.equal(d.status, 'enabled');
    assert.deepEqual(d.tags, { location: { plant: 'Redmond43' } });
    assert.equal(d.properties.desired.telemetryInterval, 30);
    assert.ok(find(id, 'sensor'), 'the module is exported on a line of its own');
    assert.ok(find(edge.deviceId, '$edgeAgent'), "the edge device's $edgeAgent is exported");
    const gw = lines.findIndex((l) => l.id === edge.deviceId && !l.moduleId);
    const child = lines.findIndex((l) => l.id === leaf);
    assert.ok(gw >= 0 && gw < child, 'the edge device comes before its child');
    assert.equal(lines[child].deviceScope, edge.deviceScope);

    const bare = await container();
    const noKeys = await finished((await registry.exportDevicesToBlob(bare.url, true)).jobId);
    assert.equal(noKeys.status, 'completed', noKeys.failureReason);
    assert.equal(noKeys.excludeKeysInExport, true);
    for (const l of jsonLines(await readBlob(bare.name, 'devices.txt'))) assert.equal(l.authentication, null, `${l.id} without keys`);

    const { responseBody: all } = await registry.listJobs();
    assert.ok(Array.isArray(all));
    assert.ok(all.some((j) => j.jobId === created.jobId && j.status === 'completed'));
    // Cancelling a job that has ended answers it as it is.
    await registry.cancelJob(created.jobId);
    assert.equal((await registry.getJob(created.jobId)).status, 'completed');
  });

  it('importDevicesFromBlob creates, updates and deletes, and logs what it cannot apply', async () => {
    const fresh = uniqueId('imp');
    const existing = uniqueId('imp');
    const gone = uniqueId('imp');
    await registry.create({ deviceId: existing });
    await registry.create({ deviceId: gone });
    const keys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const newKeys = { primaryKey: randomKey(), secondaryKey: randomKey() };
    const input = await container();
    const body = [
      { id: fresh, authentication: { symmetricKey: keys }, status: 'enabled', importMode: 'createOrUpdate', tags: { floor: 3 } },
      { id: existing, authentication: { symmetricKey: newKeys }, status: 'disabled', importMode: 'createOrUpdate' },
      { id: gone, importMode: 'delete' },
      { id: existing, importMode: 'create' },
    ].map((l) => JSON.stringify(l)).join('\r\n') + '\r\nthis line is not JSON\r\n';
    await azurite.blobService.getContainerClient(input.name).getBlockBlobClient('devices.txt').upload(body, Buffer.byteLength(body));
    const out = await container();
    const created = await registry.importDevicesFromBlob(input.url, out.url);
    assert.equal(created.type, 'import');
    const job = await finished(created.jobId);
    assert.equal(job.status, 'completed', job.failureReason);

    const { responseBody: f } = await registry.get(fresh);
    assert.deepEqual(f.authentication.symmetricKey, keys);
    assert.equal((await registry.getTwin(fresh)).responseBody.tags.floor, 3);
    const { responseBody: e } = await registry.get(existing);
    assert.deepEqual(e.authentication.symmetricKey, newKeys);
    assert.equal(e.status, 'disabled');
    await rejectsWith(registry.get(gone), 'DeviceNotFoundError', 'the deleted device');

    const errors = jsonLines(await readBlob(out.name, 'importErrors.log'));
    assert.equal(errors.length, 2, JSON.stringify(errors));
    const dup = errors.find((x) => x.deviceId === existing);
    assert.equal(dup.errorCode, 409001);
    assert.match(dup.errorStatus, /DeviceAlreadyExists/);
    assert.ok(errors.some((x) => !x.deviceId && /line 5/.test(x.errorStatus)), 'the line that is not JSON is logged by its number');
  });

  it("the CLI's registry-job export and import, with configurations", async () => {
    const id = uniqueId('cli');
    await registry.create({ deviceId: id });
    const configId = uniqueId('cfg').toLowerCase();
    await hub.cliAsync('configuration', 'create', configId, '--target', `deviceId='${id}'`, '--content', '{"properties.desired.cliRate":7}');
    const out = await container();
    const job = JSON.parse(await hub.cliAsync('registry-job', 'export', out.url, '--include-configurations', '--wait'));
    assert.equal(job.status, 'completed', job.failureReason);
    assert.ok(jsonLines(await readBlob(out.name, 'devices.txt')).some((l) => l.id === id));
    const configs = jsonLines(await readBlob(out.name, 'configurations.txt'));
    assert.ok(configs.some((c) => c.id === configId && c.content.deviceContent['properties.desired.cliRate'] === 7), JSON.stringify(configs));

    // Imported back after both are deleted.
    await registry.delete(id);
    await hub.cliAsync('configuration', 'delete', configId);
    const logs = await container();
    const imported = JSON.parse(await hub.cliAsync('registry-job', 'import', out.url, logs.url, '--include-configurations', '--wait'));
    assert.equal(imported.status, 'completed', imported.failureReason);
    assert.equal((await registry.get(id)).responseBody.deviceId, id);
    assert.match(await hub.cliAsync('configuration', 'show', configId), /cliRate/);
    const listed = JSON.parse(await hub.cliAsync('registry-job', 'list'));
    assert.ok(listed.some((j) => j.jobId === imported.jobId && j.type === 'import'));
    assert.equal(JSON.parse(await hub.cliAsync('registry-job', 'show', job.jobId)).type, 'export');
  });

  it('a container the SAS does not let the hub write fails the job, with the reason', async () => {
    const readOnly = await container('rl');
    const job = await finished((await registry.exportDevicesToBlob(readOnly.url, true)).jobId);
    assert.equal(job.status, 'failed');
    assert.match(job.failureReason, /storage account/);
    assert.doesNotMatch(job.failureReason, /sig=[^R]/, 'no SAS signature in the reason');
  });

  it('what twinhub cannot do or the request gets wrong is refused', async () => {
    await rejectsWith(registry.exportDevicesToBlobByIdentity((await container()).url, false), 'ArgumentError', 'identity-based storage');
    await rejectsWith(registry.exportDevicesToBlob('not a url', false), 'ArgumentError', 'a container URL that is not one');
    // The Node SDK has no class of its own for JobNotFound (a 404).
    await assert.rejects(registry.getJob('no-such-job'), (e) => e.response.statusCode === 404 && /JobNotFound/.test(e.responseBody));
  });
});
