'use strict';
// IoT Edge identities through azure-iothub's Registry: the scopes the hub
// gives edge devices, leaf and nested children, and the system modules of
// an edge device, in the order an application (or the SDK's own
// end-to-end suite) goes through them.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { Registry } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const { rejectsWith, uniqueId, printOutputOnFailure, randomKey, queryAll } = require('./lib/util');

const SCOPE = /^ms-azure-iot-edge:\/\/(.+)-(\d+)$/;

describe('IoT Edge identities', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.40' });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function newEdge(extra = {}) {
    const deviceId = uniqueId('edge');
    const { responseBody: d } = await registry.create({ deviceId, capabilities: { iotEdge: true }, ...extra });
    return d;
  }

  it('an edge device gets its own scope, no parent and the $edgeAgent and $edgeHub modules', async () => {
    const edge = await newEdge({
      authentication: { type: 'sas', symmetricKey: { primaryKey: randomKey(), secondaryKey: randomKey() } },
    });
    assert.equal(edge.capabilities.iotEdge, true);
    const m = SCOPE.exec(edge.deviceScope);
    assert.ok(m, `deviceScope ${edge.deviceScope} is an edge scope`);
    assert.equal(m[1], edge.deviceId);
    assert.equal(m[2], edge.generationId);
    assert.deepEqual(edge.parentScopes, []);
    const { responseBody: got } = await registry.get(edge.deviceId);
    assert.equal(got.deviceScope, edge.deviceScope);

    const { responseBody: mods } = await registry.getModulesOnDevice(edge.deviceId);
    assert.deepEqual(mods.map((x) => x.moduleId).sort(), ['$edgeAgent', '$edgeHub']);
    for (const mod of mods) assert.equal(mod.authentication.type, 'none');
    const { responseBody: agentTwin } = await registry.getModuleTwin(edge.deviceId, '$edgeAgent');
    assert.equal(agentTwin.moduleId, '$edgeAgent');

    const { responseBody: plain } = await registry.create({ deviceId: uniqueId('plain') });
    assert.equal(plain.deviceScope, null);
    assert.deepEqual(plain.parentScopes, []);
    const { responseBody: plainMods } = await registry.getModulesOnDevice(plain.deviceId);
    assert.deepEqual(plainMods, []);
  });

  it('a leaf device below an edge device: its scope is the parent, a scope of no edge device is refused, the parent can go first', async () => {
    const edge = await newEdge();
    const leafId = uniqueId('leaf');
    const { responseBody: leaf } = await registry.create({ deviceId: leafId, deviceScope: edge.deviceScope });
    assert.equal(leaf.deviceScope, edge.deviceScope);
    assert.deepEqual(leaf.parentScopes, [edge.deviceScope]);

    const stale = { ...leaf, deviceScope: randomUUID() };
    await rejectsWith(registry.update(stale), 'ArgumentError', 'a scope that is no edge device');
    await rejectsWith(registry.update({ ...leaf, deviceScope: leaf.deviceScope.replace(/\d+$/, '1') }),
      'ArgumentError', 'the scope of an older device of that id');
    const { responseBody: unchanged } = await registry.get(leafId);
    assert.equal(unchanged.deviceScope, edge.deviceScope);
    assert.equal(unchanged.etag, leaf.etag);

    // The twin and the query language see the relationship.
    const { responseBody: twin } = await registry.getTwin(leafId);
    assert.equal(twin.deviceScope, edge.deviceScope);
    assert.deepEqual(twin.parentScopes, [edge.deviceScope]);
    const { items } = await queryAll(registry, `SELECT deviceId FROM devices WHERE ARRAY_CONTAINS(parentScopes, '${edge.deviceScope}')`, 10);
    assert.deepEqual(items, [{ deviceId: leafId }]);

    await registry.delete(edge.deviceId);
    await registry.delete(leafId);
    await rejectsWith(registry.get(leafId), 'DeviceNotFoundError');
  });

  it('nested edge devices: a child edge names its parent in parentScopes and keeps its own scope; a cycle is refused', async () => {
    const root = await newEdge();
    const child = await newEdge({ parentScopes: [root.deviceScope] });
    assert.ok(SCOPE.test(child.deviceScope));
    assert.notEqual(child.deviceScope, root.deviceScope);
    assert.deepEqual(child.parentScopes, [root.deviceScope]);

    const leafId = uniqueId('leaf');
    const { responseBody: leaf } = await registry.create({
      deviceId: leafId, deviceScope: child.deviceScope, parentScopes: [child.deviceScope],
    });
    assert.equal(leaf.deviceScope, child.deviceScope);
    assert.deepEqual(leaf.parentScopes, [child.deviceScope]);

    // The root below its own child would be a cycle; the child as its own
    // parent, or with two parents, is refused too.
    await rejectsWith(registry.update({ ...root, parentScopes: [child.deviceScope] }), 'ArgumentError', 'a cycle');
    await rejectsWith(registry.update({ ...child, parentScopes: [child.deviceScope] }), 'ArgumentError', 'its own parent');
    await rejectsWith(registry.update({ ...child, parentScopes: [root.deviceScope, child.deviceScope] }), 'ArgumentError', 'two parents');
    // An edge device's own scope does not change.
    const { responseBody: same } = await registry.update({ ...child, deviceScope: 'ms-azure-iot-edge://someone-1' });
    assert.equal(same.deviceScope, child.deviceScope);
    assert.deepEqual(same.parentScopes, [root.deviceScope]);

    // Moving the child to the top: parentScopes [].
    const { responseBody: top } = await registry.update({ ...same, parentScopes: [] });
    assert.deepEqual(top.parentScopes, []);
    assert.equal(top.deviceScope, child.deviceScope);

    await registry.delete(leafId);
    await registry.delete(child.deviceId);
    await registry.delete(root.deviceId);
  });

  it('modules with ids that begin with $ are IoT Edge\'s alone', async () => {
    const edge = await newEdge();
    await rejectsWith(registry.addModule({ deviceId: edge.deviceId, moduleId: '$mine' }), 'ArgumentError');
    await rejectsWith(registry.addModule({ deviceId: edge.deviceId, moduleId: '$edgeHub' }), 'DeviceAlreadyExistsError');
    // Deleting the edge device deletes its system modules.
    await registry.delete(edge.deviceId);
    await registry.create({ deviceId: edge.deviceId });
    const { responseBody: mods } = await registry.getModulesOnDevice(edge.deviceId);
    assert.deepEqual(mods, []);
  });
});
