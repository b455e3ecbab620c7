'use strict';
// Jobs v2 through azure-iothub's JobClient: twin updates and direct
// methods scheduled over a query condition, cancelled before they start,
// listed with createQuery, and their device records read with
// SELECT * FROM devices.jobs. Address 127.0.0.55.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { JobClient, Registry } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const { startHub } = require('./lib/hub');
const { rejectsWith, uniqueId, printOutputOnFailure, queryAll, sleep } = require('./lib/util');

const HOUR = 3600 * 1000;

describe('jobs', () => {
  let hub;
  let jobs;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.55', mqtt: true });
    jobs = JobClient.fromConnectionString(hub.connectionString);
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  // waitFor polls getJob until the job has the status (or fails on
  // another final one), as the SDK's own end-to-end tests do.
  async function waitFor(jobId, status) {
    for (let i = 0; i < 600; i++) {
      const { jobStatus } = await jobs.getJob(jobId);
      if (jobStatus.status === status) return jobStatus;
      if (['completed', 'failed', 'cancelled'].includes(jobStatus.status)) {
        assert.fail(`job ${jobId} ended ${jobStatus.status}, not ${status}: ${JSON.stringify(jobStatus)}`);
      }
      await sleep(100);
    }
    assert.fail(`job ${jobId} never became ${status}`);
  }

  it('a twin update job changes the twins its condition matches, and only those', async () => {
    const [a, b] = [uniqueId('jt'), uniqueId('jt')];
    await registry.create({ deviceId: a });
    await registry.create({ deviceId: b });
    const jobId = randomUUID();
    const patch = { etag: '*', tags: { key: 'value2' }, properties: { desired: { interval: 5 }, reported: {} } };
    const { jobStatus: created } = await jobs.scheduleTwinUpdate(jobId, `deviceId = '${a}'`, patch, new Date(), 120);
    assert.equal(created.jobId, jobId);
    assert.equal(created.type, 'scheduleUpdateTwin');
    const done = await waitFor(jobId, 'completed');
    assert.deepEqual(done.deviceJobStatistics, { deviceCount: 1, failedCount: 0, succeededCount: 1, runningCount: 0, pendingCount: 0 });
    assert.equal(done.queryCondition, `deviceId = '${a}'`);
    assert.deepEqual(done.updateTwin.tags, { key: 'value2' });
    assert.ok(done.endTime, 'an ended job has an endTime');

    const { responseBody: twin } = await registry.getTwin(a);
    assert.equal(twin.tags.key, 'value2');
    assert.equal(twin.properties.desired.interval, 5);
    const { responseBody: other } = await registry.getTwin(b);
    assert.deepEqual(other.tags, {});

    const { items } = await queryAll(registry, `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`, 10);
    assert.equal(items.length, 1);
    assert.equal(items[0].deviceId, a);
    assert.equal(items[0].jobType, 'scheduleUpdateTwin');
    assert.equal(items[0].status, 'completed');
  });

  it('a twin update job scheduled for later is queued, and cancelled before it starts', async () => {
    const jobId = randomUUID();
    const { jobStatus } = await jobs.scheduleTwinUpdate(jobId, "deviceId = 'nobody'", { etag: '*', tags: {} }, new Date(Date.now() + HOUR), 120);
    assert.equal(jobStatus.jobId, jobId);
    assert.equal(jobStatus.status, 'queued');
    const { jobStatus: cancelled } = await jobs.cancelJob(jobId);
    assert.equal(cancelled.status, 'cancelled');
    await waitFor(jobId, 'cancelled');
  });

  it('a method job calls the method on a device connected over MQTT and keeps its answer', async () => {
    const id = uniqueId('jm');
    await registry.create({ deviceId: id });
    const { responseBody: d } = await registry.get(id);
    const cs = `HostName=${hub.address};DeviceId=${id};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`;
    const device = Client.fromConnectionString(cs, Mqtt);
    await device.open();
    try {
      const calls = [];
      device.onDeviceMethod('testMethod', (req, res) => {
        calls.push(req.payload);
        res.send(200, { answered: req.payload.n }, () => {});
      });
      await sleep(300); // the SDK subscribes to methods lazily
      const jobId = randomUUID();
      await jobs.scheduleDeviceMethod(jobId, `deviceId IN ['${id}']`, { methodName: 'testMethod', payload: { n: 7 }, responseTimeoutInSeconds: 30 }, new Date(), 120);
      const done = await waitFor(jobId, 'completed');
      assert.equal(done.type, 'scheduleDeviceMethod');
      assert.equal(done.cloudToDeviceMethod.methodName, 'testMethod');
      assert.equal(done.deviceJobStatistics.succeededCount, 1);
      assert.deepEqual(calls, [{ n: 7 }], 'the device got the call once');
      const { items } = await queryAll(registry, `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`, 10);
      assert.equal(items.length, 1);
      assert.deepEqual(items[0].outcome, { deviceMethodResponse: { status: 200, payload: { answered: 7 } } });
    } finally {
      await device.close();
    }
  });

  it('a method job scheduled for later is cancelled; an offline device fails its part', async () => {
    const later = randomUUID();
    const { jobStatus } = await jobs.scheduleDeviceMethod(later, "deviceId = 'x'", { methodName: 'm' }, new Date(Date.now() + HOUR), 120);
    assert.equal(jobStatus.status, 'queued');
    await jobs.cancelJob(later);
    await waitFor(later, 'cancelled');

    const id = uniqueId('joff');
    await registry.create({ deviceId: id });
    const jobId = randomUUID();
    await jobs.scheduleDeviceMethod(jobId, `deviceId = '${id}'`, { methodName: 'm' }, new Date(), 120);
    const done = await waitFor(jobId, 'completed');
    assert.equal(done.deviceJobStatistics.failedCount, 1);
    const { items } = await queryAll(registry, `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}' AND devices.jobs.status = 'failed'`, 10);
    assert.equal(items.length, 1);
    assert.equal(items[0].error.code, 'DeviceNotOnline');
  });

  it('createQuery lists jobs by type and status, a page at a time', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const jobId = `list-${i}-${randomUUID()}`;
      ids.push(jobId);
      await jobs.scheduleTwinUpdate(jobId, "deviceId = 'none'", { etag: '*', tags: { i } }, new Date(Date.now() + HOUR), 60);
      await jobs.cancelJob(jobId);
    }
    const query = jobs.createQuery('scheduleUpdateTwin', 'cancelled', 2);
    const seen = [];
    for (let pages = 0; query.hasMoreResults; pages++) {
      assert.ok(pages < 10, 'the query ends');
      const { result } = await query.next(query.continuationToken);
      assert.ok(result.length <= 2, `a page of ${result.length}`);
      for (const j of result) {
        assert.equal(j.type, 'scheduleUpdateTwin');
        assert.equal(j.status, 'cancelled');
        seen.push(j.jobId);
      }
    }
    for (const id of ids) assert.ok(seen.includes(id), `${id} is listed`);
    assert.equal(new Set(seen).size, seen.length, 'no job twice');
  });

  it('bad jobs are refused with the errors the SDK maps', async () => {
    const jobId = randomUUID();
    await jobs.scheduleTwinUpdate(jobId, "deviceId = 'x'", { etag: '*', tags: {} }, new Date(Date.now() + HOUR), 60);
    await rejectsWith(jobs.scheduleTwinUpdate(jobId, "deviceId = 'x'", { etag: '*', tags: {} }), 'DeviceAlreadyExistsError', 'an id in use');
    await rejectsWith(jobs.scheduleTwinUpdate(randomUUID(), 'deviceId = ', { etag: '*', tags: {} }), 'ArgumentError', 'a condition that does not parse');
    await rejectsWith(jobs.scheduleTwinUpdate(randomUUID(), '*', { etag: 'AAAA', tags: {} }), 'InvalidEtagError', 'an etag other than *');
    let err;
    try { await jobs.getJob(randomUUID()); } catch (e) { err = e; }
    assert.ok(err, 'an unknown job');
    assert.equal(err.response.statusCode, 404);
    assert.match(err.responseBody, /JobNotFound/);
  });
});
