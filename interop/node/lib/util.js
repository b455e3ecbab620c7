'use strict';
// Helpers shared by the interop tests.

const assert = require('node:assert/strict');
const { afterEach } = require('node:test');

// rejectsWith awaits promise, asserts that it fails with an error of the
// named class (the SDKs' error classes set err.name, for example
// 'DeviceNotFoundError'), and returns the error.
async function rejectsWith(promise, name, what = '') {
  let err = null;
  let result;
  try {
    result = await promise;
  } catch (e) {
    err = e;
  }
  if (!err) {
    assert.fail(`${what ? what + ': ' : ''}expected ${name}, but the call succeeded` +
      (result && result.httpResponse ? ` with HTTP ${result.httpResponse.statusCode}` : ''));
  }
  if (err.name !== name) {
    const status = err.response && err.response.statusCode;
    err.message = `${what ? what + ': ' : ''}expected ${name}, got ${err.name}` +
      (status ? ` (HTTP ${status})` : '') + `: ${err.message}` +
      (err.responseBody ? `\nresponse body: ${err.responseBody}` : '');
    throw err;
  }
  return err;
}

// statusOf is the HTTP status of an error from a REST call.
function statusOf(err) {
  return err && err.response ? err.response.statusCode : undefined;
}

let counter = 0;
// uniqueId makes an id that no earlier call in this process made.
function uniqueId(prefix = 'dev') {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

// printOutputOnFailure registers an afterEach hook that prints the end of
// the hub's output when a test fails. getHub returns the hub (or null).
function printOutputOnFailure(getHub, lines = 80) {
  afterEach((t) => {
    if (t.passed) return;
    const hub = getHub();
    if (!hub) return;
    const out = hub.output().split('\n');
    const tail = out.slice(-lines).join('\n');
    console.log(`--- last ${Math.min(lines, out.length)} lines of twinhub output (${hub.address}) after "${t.name}" ---\n${tail}`);
  });
}

// TIME matches the UTC times IoT Hub writes: 2024-05-01T12:34:56.1234567Z.
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$/;

// ticks turns such a time into a BigInt of 100 ns units, so that times can
// be compared exactly (Date keeps milliseconds only).
function ticks(s) {
  assert.match(s, TIME);
  const [whole, frac = ''] = s.slice(0, -1).split('.');
  return BigInt(Date.parse(whole + 'Z')) * 10000n + BigInt((frac + '0000000').slice(0, 7));
}

// isBase64Key tells whether s is a base64 key of 16 to 64 bytes, as IoT
// Hub's symmetric keys are.
function isBase64Key(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(s) || s.length % 4 !== 0) return false;
  const n = Buffer.from(s, 'base64').length;
  return n >= 16 && n <= 64;
}

// randomKey is a fresh base64 key of 32 bytes.
function randomKey() {
  return require('node:crypto').randomBytes(32).toString('base64');
}

// withoutMetadata copies a properties section without $metadata and $version.
function withoutMetadata(section) {
  const out = { ...section };
  delete out.$metadata;
  delete out.$version;
  return out;
}

// queryAll runs a query to its end with next() (or nextAsTwin()),
// returning every item and the pages it came in. The continuation token is
// passed explicitly: azure-iothub's promise form of next() with no
// argument ignores the query's own token and starts over (its callback
// form and nextAsTwin() use it), so a loop on `await query.next()` never
// ends, against IoT Hub as against twinhub.
async function queryAll(registry, sql, pageSize, asTwin = false) {
  const query = registry.createQuery(sql, pageSize);
  const pages = [];
  for (let i = 0; query.hasMoreResults; i++) {
    if (i > 1000) assert.fail(`query "${sql}" returned more than 1000 pages: hasMoreResults never became false`);
    const { result } = asTwin ? await query.nextAsTwin(query.continuationToken) : await query.next(query.continuationToken);
    pages.push(result);
  }
  return { items: pages.flat(), pages };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// reportedUpdate wraps twin.properties.reported.update, which takes a
// callback and returns nothing, in a promise. Its round trip also tells a
// test that the hub has the SUBSCRIBE a 'properties.desired' listener
// sent before it on the same connection: the SDK subscribes when the
// listener is added, without a way to wait for it.
function reportedUpdate(twin, patch) {
  return new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  });
}

module.exports = {
  rejectsWith, statusOf, uniqueId, printOutputOnFailure, TIME, ticks,
  isBase64Key, randomKey, withoutMetadata, queryAll, sleep, reportedUpdate,
};
