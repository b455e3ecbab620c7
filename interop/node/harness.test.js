'use strict';
// The test harness itself (lib/hub.js): what other test files rely on.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const { Registry, ConnectionString } = require('azure-iothub');

const { startHub, testCA } = require('./lib/hub');
const { uniqueId, printOutputOnFailure } = require('./lib/util');

const ADDRESS = '127.0.0.37';

function tlsConnect(host, port) {
  return new Promise((resolve) => {
    const sock = tls.connect({ host, port, timeout: 2000 });
    sock.once('secureConnect', () => { const ok = sock.authorized; sock.destroy(); resolve(ok ? 'trusted' : 'untrusted'); });
    sock.once('error', (err) => { sock.destroy(); resolve(err.code || err.message); });
    sock.once('timeout', () => { sock.destroy(); resolve('timeout'); });
  });
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

describe('harness', () => {
  let hub;

  before(async () => {
    hub = await startHub({ address: ADDRESS });
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  it('startHub gives the address, a data folder with the test CA, and the owner connection string', () => {
    assert.equal(hub.address, ADDRESS);
    assert.ok(fs.statSync(hub.dataDir).isDirectory());
    assert.equal(fs.readFileSync(path.join(hub.dataDir, 'ca.pem'), 'utf8'), testCA().caPem);
    const cs = ConnectionString.parse(hub.connectionString);
    assert.equal(cs.HostName, ADDRESS);
    assert.equal(cs.SharedAccessKeyName, 'iothubowner');
    assert.ok(cs.SharedAccessKey.length > 0);
    assert.match(hub.output(), /twinhub is serving/);
  });

  it('the HTTPS port presents a certificate for the address, trusted through NODE_EXTRA_CA_CERTS', async () => {
    assert.equal(await tlsConnect(ADDRESS, 443), 'trusted');
  });

  it('createDevice, cli, deviceConnectionString, moduleConnectionString and policyConnectionString', async () => {
    const id = uniqueId('h');
    const d = await hub.createDevice(id);
    assert.equal(d.deviceId, id);
    assert.equal(hub.deviceConnectionString(id),
      `HostName=${ADDRESS};DeviceId=${id};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`);
    const edge = await hub.createDevice(uniqueId('h'), { edge: true, disabled: true });
    assert.equal(edge.capabilities.iotEdge, true);
    assert.equal(edge.status, 'disabled');

    const m = await hub.createModule(id, 'mod1');
    assert.equal(m.moduleId, 'mod1');
    assert.equal(hub.moduleConnectionString(id, 'mod1'),
      `HostName=${ADDRESS};DeviceId=${id};ModuleId=mod1;SharedAccessKey=${m.authentication.symmetricKey.primaryKey}`);

    const shown = JSON.parse(hub.cli('device', 'show', id));
    assert.equal(shown.etag, d.etag);
    assert.throws(() => hub.cli('device', 'show', uniqueId('ghost')), /DeviceNotFound/);

    const service = ConnectionString.parse(hub.policyConnectionString('service'));
    assert.equal(service.SharedAccessKeyName, 'service');
    // The SDK sees what the CLI made.
    const registry = Registry.fromConnectionString(hub.connectionString);
    assert.equal((await registry.get(id)).responseBody.etag, d.etag);
  });

  it('a second hub on the same address fails to start, with the hub output in the error, and leaves no process', async () => {
    await assert.rejects(startHub({ address: ADDRESS }), (err) => {
      assert.match(err.message, /exited during start/);
      assert.match(err.message, /twinhub output/);
      return true;
    });
    // The first hub is unharmed.
    assert.equal(await tlsConnect(ADDRESS, 443), 'trusted');
  });

  it('startHub without an address is refused', async () => {
    await assert.rejects(startHub({}), /address/);
  });

  it('restart keeps the data folder and the connection string; stop ends the process and frees the port', async () => {
    const h = await startHub({ address: '127.0.0.38', mqtt: false });
    try {
      const pid = h._child.pid;
      const cs = h.connectionString;
      const dir = h.dataDir;
      await h.restart();
      assert.ok(!alive(pid), 'the first process is gone');
      assert.equal(h.connectionString, cs);
      assert.equal(h.dataDir, dir);
      assert.equal((h.output().match(/twinhub is serving/g) || []).length, 2, 'the output of both runs is kept');
      const pid2 = h._child.pid;
      await h.stop();
      assert.ok(!alive(pid2), 'the process is gone after stop');
      assert.match(h.output(), /shutting down/, 'the output is still there after stop');
      assert.notEqual(await tlsConnect('127.0.0.38', 443), 'trusted', 'nothing listens any more');
      assert.ok(!fs.existsSync(dir) || process.env.TWINHUB_KEEP_DATA, 'the data folder is removed');
    } finally {
      if (h._child) await h.stop();
    }
  });

  it('a hub killed from outside makes stop() fail with its exit status', async () => {
    const h = await startHub({ address: '127.0.0.39' });
    h._child.kill('SIGKILL');
    await assert.rejects(h.stop(), /exited with code null, signal SIGKILL/);
  });
});
