'use strict';
// Device twins through azure-iothub: getTwin, updateTwin, Twin.get and
// Twin.update, versions, etags, metadata, merge rules and limits.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const { startHub } = require('./lib/hub');
const {
  rejectsWith, uniqueId, printOutputOnFailure, TIME, ticks, withoutMetadata, sleep,
} = require('./lib/util');

// The patch of the "get started with device twins" tutorial (tags) with a
// desired property.
const TUTORIAL_PATCH = {
  tags: { location: { region: 'US', plant: 'Redmond43' } },
  properties: { desired: { power_level: 1 } },
};

describe('twins', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.32' });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  async function newDevice(prefix = 'twin') {
    const id = uniqueId(prefix);
    await registry.create({ deviceId: id });
    return id;
  }

  async function twinOf(id) {
    return (await registry.getTwin(id)).responseBody;
  }

  // unchanged asserts that a twin read now is the twin read before.
  async function assertUnchanged(id, before, what) {
    const now = await twinOf(id);
    assert.equal(now.version, before.version, `${what}: version unchanged`);
    assert.equal(now.etag, before.etag, `${what}: etag unchanged`);
    assert.deepEqual(now.tags, before.tags, `${what}: tags unchanged`);
    assert.deepEqual(now.properties.desired, before.properties.desired, `${what}: desired unchanged`);
  }

  it('a new device has a twin at version 1 with empty sections', async () => {
    const id = await newDevice('new');
    const { responseBody: t, httpResponse } = await registry.getTwin(id);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(t.deviceId, id);
    assert.equal(t.moduleId, undefined);
    assert.equal(t.version, 1);
    assert.equal(typeof t.etag, 'string');
    assert.ok(t.etag.length > 0);
    assert.equal(t.status, 'enabled');
    assert.equal(t.connectionState, 'Disconnected');
    assert.equal(t.authenticationType, 'sas');
    assert.ok(t.tags === undefined || Object.keys(t.tags).length === 0, 'tags are empty or absent');
    for (const section of ['desired', 'reported']) {
      const s = t.properties[section];
      assert.equal(s.$version, 1, `${section}.$version`);
      assert.match(s.$metadata.$lastUpdated, TIME, `${section}.$metadata.$lastUpdated`);
      assert.deepEqual(withoutMetadata(s), {}, `${section} holds no properties`);
    }
  });

  it('updateTwin with tags and desired: version +1, metadata on the changed leaves, new etag', async () => {
    const id = await newDevice('tut');
    const before = await twinOf(id);
    await sleep(5);
    const { responseBody: t, httpResponse } = await registry.updateTwin(id, TUTORIAL_PATCH, before.etag);
    assert.equal(httpResponse.statusCode, 200);
    assert.equal(t.deviceId, id);
    assert.equal(t.version, before.version + 1, 'version goes up by exactly 1');
    assert.notEqual(t.etag, before.etag, 'etag changes');
    assert.deepEqual(t.tags, TUTORIAL_PATCH.tags);

    const desired = t.properties.desired;
    assert.equal(desired.power_level, 1);
    assert.equal(desired.$version, before.properties.desired.$version + 1);
    assert.match(desired.$metadata.$lastUpdated, TIME);
    assert.ok(ticks(desired.$metadata.$lastUpdated) > ticks(before.properties.desired.$metadata.$lastUpdated),
      'desired.$metadata.$lastUpdated moves');
    assert.match(desired.$metadata.power_level.$lastUpdated, TIME);
    assert.equal(desired.$metadata.power_level.$lastUpdatedVersion, desired.$version);
    assert.equal(desired.$metadata.$lastUpdatedVersion, desired.$version);

    const reported = t.properties.reported;
    assert.equal(reported.$version, 1, 'reported is untouched');
    assert.equal(reported.$metadata.$lastUpdated, before.properties.reported.$metadata.$lastUpdated);

    // A read shows the same twin.
    const again = await twinOf(id);
    assert.equal(again.version, t.version);
    assert.equal(again.etag, t.etag);
    assert.deepEqual(again.tags, t.tags);
    assert.deepEqual(again.properties.desired, t.properties.desired);

    // A second update adds exactly 1 again.
    const { responseBody: t3 } = await registry.updateTwin(id, { properties: { desired: { power_level: 2 } } }, t.etag);
    assert.equal(t3.version, t.version + 1);
    assert.equal(t3.properties.desired.$version, desired.$version + 1);
    assert.equal(t3.properties.desired.$metadata.power_level.$lastUpdatedVersion, t3.properties.desired.$version);
    assert.deepEqual(t3.tags, TUTORIAL_PATCH.tags, 'tags not named in a patch stay');
  });

  it('a tags-only update leaves the desired $version alone', async () => {
    const id = await newDevice('tagsonly');
    const before = await twinOf(id);
    const { responseBody: t } = await registry.updateTwin(id, { tags: { a: 1 } }, '*');
    assert.equal(t.version, before.version + 1);
    assert.equal(t.properties.desired.$version, before.properties.desired.$version);
    assert.deepEqual(t.tags, { a: 1 });
  });

  it('Twin.get then twin.update with its etag; a stale etag is InvalidEtagError', async () => {
    const id = await newDevice('etag');
    const { responseBody: twinA } = await registry.getTwin(id);
    const { responseBody: twinB } = await registry.getTwin(id);
    const { result: gotA } = await twinA.get();
    assert.equal(gotA, twinA);
    const etag0 = twinA.etag;

    const { result: updated, message } = await twinA.update({ tags: { location: { region: 'US', plant: 'Redmond43' } } });
    assert.equal(message.statusCode, 200);
    assert.equal(updated, twinA);
    assert.notEqual(twinA.etag, etag0, 'the Twin object carries the new etag');
    assert.deepEqual(twinA.tags, { location: { region: 'US', plant: 'Redmond43' } });

    // twinA's etag is current: a second update through it works.
    await twinA.update({ properties: { desired: { power_level: 1 } } });
    assert.equal(twinA.properties.desired.power_level, 1);
    const current = await twinOf(id);
    assert.equal(current.version, 3);

    // twinB still has the first etag.
    assert.equal(twinB.etag, etag0);
    const err = await rejectsWith(twinB.update({ tags: { stale: true } }), 'InvalidEtagError');
    assert.equal(err.response.statusCode, 412);
    await rejectsWith(registry.updateTwin(id, { tags: { stale: true } }, etag0), 'InvalidEtagError', 'updateTwin with the stale etag');
    await assertUnchanged(id, current, 'after the stale updates');

    // After Twin.get, twinB is current again.
    await twinB.get();
    assert.equal(twinB.etag, current.etag);
    await twinB.update({ tags: { fresh: true } });
    assert.equal(twinB.tags.fresh, true);
  });

  it('null removes a key and its metadata', async () => {
    const id = await newDevice('null');
    await registry.updateTwin(id, {
      tags: { keep: 1, drop: 2 },
      properties: { desired: { keep: 'k', drop: 'd', obj: { a: 1, b: 2 } } },
    }, '*');
    const { responseBody: t } = await registry.updateTwin(id, {
      tags: { drop: null },
      properties: { desired: { drop: null, obj: { a: null } } },
    }, '*');
    assert.deepEqual(t.tags, { keep: 1 });
    const d = t.properties.desired;
    assert.deepEqual(withoutMetadata(d), { keep: 'k', obj: { b: 2 } });
    assert.equal(d.$metadata.drop, undefined, 'no metadata for the removed key');
    assert.equal(d.$metadata.obj.a, undefined, 'no metadata for the removed nested key');
    assert.match(d.$metadata.obj.b.$lastUpdated, TIME);
    assert.match(d.$metadata.keep.$lastUpdated, TIME);
    // The removal shows in the metadata of the parents.
    assert.equal(d.$metadata.$lastUpdatedVersion, d.$version);
    assert.equal(d.$metadata.obj.$lastUpdatedVersion, d.$version);
    assert.equal(d.$metadata.keep.$lastUpdatedVersion, d.$version - 1, 'the untouched leaf keeps its version');

    // Removing a whole object removes its subtree.
    const { responseBody: t2 } = await registry.updateTwin(id, { properties: { desired: { obj: null } } }, '*');
    assert.deepEqual(withoutMetadata(t2.properties.desired), { keep: 'k' });
    assert.equal(t2.properties.desired.$metadata.obj, undefined);

    // Removing a key that is not there is harmless.
    const { responseBody: t3 } = await registry.updateTwin(id, { properties: { desired: { never: null } } }, '*');
    assert.deepEqual(withoutMetadata(t3.properties.desired), { keep: 'k' });
  });

  // IoT Hub takes a null section as "clear it", with "*" or the twin's
  // etag (the Node SDK's own end-to-end tests do both).
  for (const etag of ['*', 'current']) {
    it(`"tags": null and "properties": {"desired": null} clear their section (etag ${etag})`, async () => {
      const id = await newDevice('clear');
      const { responseBody: t1 } = await registry.updateTwin(id, TUTORIAL_PATCH, '*');
      const { responseBody: t2 } = await registry.updateTwin(id, { tags: null }, etag === '*' ? '*' : t1.etag);
      assert.deepEqual(t2.tags || {}, {});
      assert.deepEqual(withoutMetadata(t2.properties.desired), { power_level: 1 }, 'desired untouched by tags: null');
      assert.equal(t2.properties.desired.$version, t1.properties.desired.$version);
      assert.equal(t2.version, t1.version + 1);
      const { responseBody: t3 } = await registry.updateTwin(id, { properties: { desired: null } }, etag === '*' ? '*' : t2.etag);
      assert.deepEqual(withoutMetadata(t3.properties.desired), {});
      assert.equal(t3.properties.desired.$version, t2.properties.desired.$version + 1);
      assert.equal(t3.properties.desired.$metadata.power_level, undefined);
      assert.match(t3.properties.desired.$metadata.$lastUpdated, TIME);
      assert.equal(t3.version, t2.version + 1);
      assert.deepEqual(await twinOf(id).then((t) => withoutMetadata(t.properties.desired)), {});
    });
  }

  it('a nested patch merges and keeps the siblings', async () => {
    const id = await newDevice('merge');
    await registry.updateTwin(id, {
      tags: { location: { region: 'US' } },
      properties: { desired: { config: { a: 1, sub: { x: 1 } } } },
    }, '*');
    const { responseBody: t } = await registry.updateTwin(id, {
      tags: { location: { plant: 'Redmond43' } },
      properties: { desired: { config: { b: 2, sub: { y: 2 } } } },
    }, '*');
    assert.deepEqual(t.tags, { location: { region: 'US', plant: 'Redmond43' } });
    assert.deepEqual(withoutMetadata(t.properties.desired), { config: { a: 1, b: 2, sub: { x: 1, y: 2 } } });
    const meta = t.properties.desired.$metadata;
    const v = t.properties.desired.$version;
    assert.equal(meta.config.a.$lastUpdatedVersion, v - 1, 'the sibling keeps its metadata');
    assert.equal(meta.config.b.$lastUpdatedVersion, v);
    assert.equal(meta.config.sub.x.$lastUpdatedVersion, v - 1);
    assert.equal(meta.config.sub.y.$lastUpdatedVersion, v);
    assert.equal(meta.config.$lastUpdatedVersion, v);

    // A scalar replaces an object and an object replaces a scalar.
    const { responseBody: t2 } = await registry.updateTwin(id, {
      properties: { desired: { config: { sub: 5, a: { deep: true } } } },
    }, '*');
    assert.deepEqual(withoutMetadata(t2.properties.desired), { config: { a: { deep: true }, b: 2, sub: 5 } });
  });

  it('values of every JSON type round-trip', async () => {
    const id = await newDevice('types');
    const desired = {
      s: 'text', n: 1.5, neg: -42, zero: 0, t: true, f: false,
      arr: [1, 'two', { three: 3 }, [4]], obj: { nested: { deeper: 'x' } },
      unicode: 'Grüße, 世界', maxint: 4503599627370495, minint: -4503599627370496,
    };
    const { responseBody: t } = await registry.updateTwin(id, { properties: { desired } }, '*');
    assert.deepEqual(withoutMetadata(t.properties.desired), desired);
    assert.deepEqual(withoutMetadata((await twinOf(id)).properties.desired), desired);
  });

  it('depth 10, a 4 KB string and 32 KB of desired properties as IoT Hub counts them are accepted', async () => {
    const id = await newDevice('atlimit');
    // The twins doc's own example of the deepest valid object.
    let deep = { property: 'value' };
    for (const k of ['ten', 'nine', 'eight', 'seven', 'six', 'five', 'four', 'three', 'two', 'one']) deep = { [k]: deep };
    const { responseBody: t1 } = await registry.updateTwin(id, { tags: deep, properties: { desired: deep } }, '*');
    assert.deepEqual(t1.tags, deep);
    assert.deepEqual(withoutMetadata(t1.properties.desired), deep);

    const s4k = 'x'.repeat(4096);
    const { responseBody: t2 } = await registry.updateTwin(id, { properties: { desired: { one: null, s: s4k } } }, '*');
    assert.equal(t2.properties.desired.s, s4k);
  });

  it('tags of 8000 bytes as IoT Hub counts them (keys plus values) are accepted', async () => {
    // 100 keys of 3 characters with values of 77: 8000 by the twins doc's
    // rule (the lengths of keys and values), 8601 characters of JSON.
    const id = await newDevice('tags8k');
    const tags = {};
    for (let i = 0; i < 100; i++) tags[`k${String(i).padStart(2, '0')}`] = 'v'.repeat(77);
    const { responseBody: t } = await registry.updateTwin(id, { tags }, '*');
    assert.deepEqual(t.tags, tags);
  });

  it('desired properties of 32000 bytes as IoT Hub counts them are accepted', async () => {
    // 400 keys of 4 characters with values of 76: 32000 by the doc's rule,
    // 34401 characters of JSON.
    const id = await newDevice('des32k');
    const desired = {};
    for (let i = 0; i < 400; i++) desired[`k${String(i).padStart(3, '0')}`] = 'v'.repeat(76);
    const { responseBody: t } = await registry.updateTwin(id, { properties: { desired } }, '*');
    assert.deepEqual(withoutMetadata(t.properties.desired), desired);
  });

  // IoT Hub refuses a patch that breaks a rule of form (depth, keys,
  // strings, integers) with 400, which azure-iothub turns into
  // ArgumentError, and one that would make a section too large with 403
  // DeviceModelMaxPropertiesExceeded ("'Properties.Desired' size should be
  // less than 32768 bytes."), which azure-iothub turns into
  // TooManyDevicesError, its class for every 403.
  describe('limits: each refused patch fails as on IoT Hub and leaves the twin unchanged', () => {
    let id;
    let prior;

    before(async () => {
      id = await newDevice('limits');
      await registry.updateTwin(id, TUTORIAL_PATCH, '*');
    });

    const deep11 = (() => {
      let o = { property: 'value' };
      for (let i = 11; i >= 1; i--) o = { [`l${i}`]: o };
      return o;
    })();
    const big = (n, size) => {
      const o = {};
      for (let i = 0; i < n; i++) o[`k${i}`] = 'x'.repeat(size);
      return o;
    };

    const TOO_LARGE = { name: 'TooManyDevicesError', status: 403, code: 'DeviceModelMaxPropertiesExceeded' };
    const INVALID = { name: 'ArgumentError', status: 400 };
    const cases = [
      ['tags over 8 KB', { tags: big(3, 3000) }, null, TOO_LARGE],
      ['desired over 32 KB', { properties: { desired: big(9, 4000) } }, null, TOO_LARGE],
      ['tags over 8 KB in total after the merge', { tags: big(2, 3000) }, { tags: { k3: 'x'.repeat(3000) } }, TOO_LARGE],
      ['desired nested 11 deep', { properties: { desired: deep11 } }],
      ['tags nested 11 deep', { tags: deep11 }],
      ['a desired key with $', { properties: { desired: { $bad: 1 } } }],
      ['a desired key with .', { properties: { desired: { 'a.b': 1 } } }],
      ['a nested desired key with $', { properties: { desired: { ok: { 'x$y': 1 } } } }],
      ['a tag key with .', { tags: { 'a.b': 1 } }],
      ['a key with a space', { tags: { 'a b': 1 } }],
      ['a key with a control character', { tags: { 'a\u0001b': 1 } }],
      ['a key over 1 KB', { tags: { ['k'.repeat(1025)]: 1 } }],
      ['a desired string over 4 KB', { properties: { desired: { s: 'x'.repeat(4097) } } }],
      ['a tag string over 4 KB', { tags: { s: 'x'.repeat(4097) } }],
      ['the integer 2^53', { properties: { desired: { n: 2 ** 53 } } }],
      ['the integer 2^52', { properties: { desired: { n: 2 ** 52 } } }],
      ['the integer -2^52-1', { properties: { desired: { n: -(2 ** 52) - 1 } } }],
    ];
    for (const [what, patch, second, expected = INVALID] of cases) {
      it(`${what}: ${expected.name} (HTTP ${expected.status})`, async () => {
        prior = await twinOf(id);
        let refused = patch;
        if (second) {
          // The first patch fits; the second would push the total over.
          await registry.updateTwin(id, patch, '*');
          prior = await twinOf(id);
          refused = second;
        }
        const err = await rejectsWith(registry.updateTwin(id, refused, prior.etag), expected.name, what);
        assert.equal(err.response.statusCode, expected.status);
        if (expected.code) assert.match(err.responseBody, new RegExp(`ErrorCode:${expected.code};`));
        await assertUnchanged(id, prior, what);
        if (second) await registry.updateTwin(id, { tags: { k0: null, k1: null } }, '*');
      });
    }
  });

  it('a service patch never writes reported properties', async () => {
    // Reported properties belong to the device. A back end that sends a
    // twin back as it read it carries them; they must not be written
    // (whether the hub ignores them or refuses the patch).
    const id = await newDevice('rep');
    const prior = await twinOf(id);
    try {
      await registry.updateTwin(id, { tags: { t: 1 }, properties: { reported: { r: 1 } } }, '*');
    } catch (err) {
      assert.equal(err.name, 'ArgumentError');
    }
    const t = await twinOf(id);
    assert.equal(t.properties.reported.r, undefined);
    assert.equal(t.properties.reported.$version, prior.properties.reported.$version);
  });

  it('a twin read and sent back whole (read-only fields, $metadata, $version) is accepted', async () => {
    const id = await newDevice('whole');
    await registry.updateTwin(id, TUTORIAL_PATCH, '*');
    const read = await twinOf(id);
    const body = JSON.parse(JSON.stringify(read));
    body.properties.desired.power_level = 5;
    const { responseBody: t } = await registry.updateTwin(id, body, read.etag);
    assert.equal(t.properties.desired.power_level, 5);
    assert.equal(t.version, read.version + 1);
    assert.deepEqual(t.tags, TUTORIAL_PATCH.tags);
  });

  it('getTwin of an unknown device is DeviceNotFoundError; updateTwin too', async () => {
    const ghost = uniqueId('ghost');
    await rejectsWith(registry.getTwin(ghost), 'DeviceNotFoundError');
    await rejectsWith(registry.updateTwin(ghost, { tags: { a: 1 } }, '*'), 'DeviceNotFoundError');
  });

  it('concurrent updates through "*" all land, each adding 1 to the version', async () => {
    const id = await newDevice('conc');
    const n = 20;
    await Promise.all(Array.from({ length: n }, (_, i) =>
      registry.updateTwin(id, { tags: { [`t${i}`]: i }, properties: { desired: { [`d${i}`]: i } } }, '*')));
    const t = await twinOf(id);
    assert.equal(t.version, 1 + n);
    assert.equal(t.properties.desired.$version, 1 + n);
    for (let i = 0; i < n; i++) {
      assert.equal(t.tags[`t${i}`], i);
      assert.equal(t.properties.desired[`d${i}`], i);
    }
  });

  it('concurrent updates with the same etag: exactly one wins', async () => {
    const id = await newDevice('race');
    const { etag } = await twinOf(id);
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) =>
      registry.updateTwin(id, { tags: { winner: i } }, etag)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(ok.length, 1, 'one update wins');
    for (const r of failed) assert.equal(r.reason.name, 'InvalidEtagError');
    const t = await twinOf(id);
    assert.equal(t.version, 2);
    assert.equal(t.tags.winner, ok[0].value.responseBody.tags.winner);
  });
});
