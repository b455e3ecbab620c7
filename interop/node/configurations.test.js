'use strict';
// Automatic device and module configurations through azure-iothub's
// Registry: add, get, list, update (with the etag, or forced), remove, as
// an application (and the SDK's own end-to-end suite) uses them; then
// what a configuration does: its content reaches the desired properties of
// the twins it targets (and a device connected over MQTT), and
// applyConfigurationContentOnDevice writes an edge deployment into the
// module twins of an edge device. Address 127.0.0.50.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { Registry } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const { startHub } = require('./lib/hub');
const { rejectsWith, uniqueId, printOutputOnFailure, sleep, reportedUpdate } = require('./lib/util');

describe('configurations', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.50', mqtt: true });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  for (const entity of ['device', 'module']) {
    const fixture = () => ({
      id: `node_e2e_${entity}_${randomUUID()}`,
      content: { [`${entity}Content`]: { 'properties.desired': { prop1: 'foo' } } },
      targetCondition: '',
      priority: 20,
    });

    it(`a ${entity} configuration: add, get, list, update with its etag and forced, remove`, async () => {
      const cfg = fixture();
      await registry.addConfiguration(cfg);
      const { responseBody: got } = await registry.getConfiguration(cfg.id);
      assert.equal(got.id, cfg.id);
      assert.deepEqual(got.content, cfg.content);
      assert.equal(got.priority, 20);
      assert.ok(got.etag, 'an etag');
      assert.equal(typeof got.createdTimeUtc, 'string');

      const { responseBody: list } = await registry.getConfigurations();
      const listed = list.find((c) => c.id === cfg.id);
      assert.ok(listed, 'the configuration is listed');
      assert.deepEqual(listed.content, cfg.content);

      await rejectsWith(registry.addConfiguration(cfg), 'DeviceAlreadyExistsError', 'the id in use');
      got.priority = 99;
      await registry.updateConfiguration(got);
      const { responseBody: updated } = await registry.getConfiguration(cfg.id);
      assert.equal(updated.priority, 99);
      assert.notEqual(updated.etag, got.etag);
      await rejectsWith(registry.updateConfiguration({ ...got, priority: 1 }), 'InvalidEtagError', 'the old etag');

      const forced = { ...cfg, priority: 7 };
      await registry.updateConfiguration(forced, true);
      assert.equal((await registry.getConfiguration(cfg.id)).responseBody.priority, 7);

      await registry.removeConfiguration(cfg.id);
      let err;
      try { await registry.getConfiguration(cfg.id); } catch (e) { err = e; }
      assert.ok(err, 'gone after remove');
      assert.equal(err.response.statusCode, 404);
    });
  }

  it('bad configurations are refused', async () => {
    await rejectsWith(registry.addConfiguration({ id: 'Capitals', content: { deviceContent: { 'properties.desired.a': 1 } } }), 'ArgumentError', 'an id with capitals');
    await rejectsWith(registry.addConfiguration({ id: uniqueId('cfg').toLowerCase(), content: { deviceContent: { 'tags.a': 1 } } }), 'ArgumentError', 'a key outside properties.desired');
    await rejectsWith(registry.addConfiguration({ id: uniqueId('cfg').toLowerCase(), targetCondition: 'tags.a =', content: { deviceContent: { 'properties.desired.a': 1 } } }), 'ArgumentError', 'a target that does not parse');
    const cfg = { id: uniqueId('cfg').toLowerCase(), content: { deviceContent: { 'properties.desired.a': 1 } } };
    await registry.addConfiguration(cfg);
    const { responseBody: got } = await registry.getConfiguration(cfg.id);
    await rejectsWith(registry.updateConfiguration({ ...got, content: { deviceContent: { 'properties.desired.a': 2 } } }), 'ArgumentError', 'a change of content');
    await registry.removeConfiguration(cfg.id);
  });

  it('a configuration reaches the twins it targets, and a device connected over MQTT gets it as a desired change', async () => {
    const plant = `p${Date.now()}`;
    const ids = [uniqueId('cfgdev'), uniqueId('cfgdev')];
    for (const id of ids) {
      await registry.create({ deviceId: id });
      await registry.updateTwin(id, { tags: { plant } }, '*');
    }
    const { responseBody: d } = await registry.get(ids[0]);
    const device = Client.fromConnectionString(`HostName=${hub.address};DeviceId=${ids[0]};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`, Mqtt);
    await device.open();
    try {
      const twin = await device.getTwin();
      const seen = new Promise((resolve) => twin.on('properties.desired', (delta) => {
        if (delta.telemetryConfig) resolve(delta);
      }));
      // The listener's SUBSCRIBE reaches the hub before this round trip's
      // PUBLISH: without it the configuration could be applied first, and
      // the desired change never seen.
      await reportedUpdate(twin, { listening: true });
      const cfg = {
        id: uniqueId('rollout').toLowerCase(),
        content: { deviceContent: { 'properties.desired.telemetryConfig': { sendFrequency: '5m' } } },
        targetCondition: `tags.plant = '${plant}'`,
        priority: 10,
        metrics: { queries: { fiveMinutes: "SELECT deviceId FROM devices WHERE properties.desired.telemetryConfig.sendFrequency = '5m'" } },
      };
      // The portal's example of a metric: the twins the configuration
      // applied to, by the status each twin shows.
      cfg.metrics.queries.applied = `SELECT deviceId FROM devices WHERE configurations.[[${cfg.id}]].status = 'Applied'`;
      await registry.addConfiguration(cfg);
      const delta = await seen;
      assert.deepEqual(delta.telemetryConfig, { sendFrequency: '5m' });
      for (const id of ids) {
        const { responseBody: t } = await registry.getTwin(id);
        assert.deepEqual(t.properties.desired.telemetryConfig, { sendFrequency: '5m' });
      }
      let metrics;
      for (let i = 0; i < 100; i++) {
        ({ responseBody: { systemMetrics: metrics } } = await registry.getConfiguration(cfg.id));
        if (metrics.results.appliedCount === 2) break;
        await sleep(100);
      }
      assert.deepEqual(metrics.results, { targetedCount: 2, appliedCount: 2 });
      let got;
      for (let i = 0; i < 100; i++) {
        ({ responseBody: got } = await registry.getConfiguration(cfg.id));
        if (got.metrics.results.applied === 2) break;
        await sleep(100);
      }
      assert.equal(got.metrics.results.fiveMinutes, 2);
      assert.equal(got.metrics.results.applied, 2);
      const { responseBody: t } = await registry.getTwin(ids[1]);
      assert.deepEqual(t.configurations, { [cfg.id]: { status: 'Applied' } });
      const q = registry.createQuery(`SELECT * FROM devices WHERE configurations.[[${cfg.id}]].status = 'Applied'`);
      const { result: page } = await q.nextAsTwin();
      assert.deepEqual(page.map((x) => x.deviceId).sort(), [...ids].sort());
      await registry.removeConfiguration(cfg.id);
      // Deleted, it is no longer shown in the twins.
      for (let i = 0; i < 100; i++) {
        const { responseBody: after } = await registry.getTwin(ids[1]);
        if (!after.configurations) break;
        assert.ok(i < 99, 'the deleted configuration is still in the twin');
        await sleep(100);
      }
    } finally {
      await device.close();
    }
  });

  it('applyConfigurationContentOnDevice writes an edge deployment into the module twins', async () => {
    const id = uniqueId('cfgedge');
    await registry.create({ deviceId: id, capabilities: { iotEdge: true } });
    const agent = { schemaVersion: '1.1', runtime: { type: 'docker' }, modules: { sensor: { version: '1.0', type: 'docker' } } };
    await registry.applyConfigurationContentOnDevice(id, {
      modulesContent: {
        $edgeAgent: { 'properties.desired': agent },
        $edgeHub: { 'properties.desired': { schemaVersion: '1.1', routes: { up: 'FROM /messages/* INTO $upstream' } } },
      },
    });
    const { responseBody: at } = await registry.getModuleTwin(id, '$edgeAgent');
    assert.deepEqual(at.properties.desired.modules, agent.modules);
    const { responseBody: ht } = await registry.getModuleTwin(id, '$edgeHub');
    assert.deepEqual(ht.properties.desired.routes, { up: 'FROM /messages/* INTO $upstream' });
    const plain = uniqueId('cfgplain');
    await registry.create({ deviceId: plain });
    await rejectsWith(registry.applyConfigurationContentOnDevice(plain, { modulesContent: { $edgeAgent: { 'properties.desired': agent } } }), 'ArgumentError', 'a device that is not edge');
  });
});
