'use strict';
// Test harness: runs a real `twinhub serve` for interop tests written
// against the unmodified Azure IoT Node.js SDKs.
//
//   const { startHub, testCA } = require('./lib/hub');
//   const hub = await startHub({ address: '127.0.0.31' });
//   const registry = Registry.fromConnectionString(hub.connectionString);
//   ...
//   await hub.stop();
//
// Every hub listens on its own loopback address, with that address as its
// HostName (the SDKs always dial port 443 for REST and 8883 for MQTT, so
// hubs cannot share an address). Every hub of a run has its server
// certificate issued by one CA, the one testCA() returns, because Node.js
// reads NODE_EXTRA_CA_CERTS only when it starts: run.js makes that CA and
// starts the test processes with NODE_EXTRA_CA_CERTS pointing at it.
//
// Readiness: startHub resolves once the HTTPS port (443) completes a TLS
// handshake verified against the test CA. The MQTT port (8883) is waited
// for too when startHub is given { mqtt: true } (then it is required), or,
// with the default { mqtt: 'auto' }, when the hub's output of this start
// names an MQTT listener (a banner line with the word MQTT, or a log
// attribute mqtt=...; a hub built before the MQTT listener existed prints
// neither and opens no such port). { mqtt: false } never waits for it.
// Tests of the device side should pass { mqtt: true }.
//
// Processes never outlive the test process: hubs are started under
// `setpriv --pdeathsig SIGKILL` where setpriv exists, and killed on exit,
// SIGINT, SIGTERM and SIGHUP.

const { spawn, execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const tls = require('node:tls');

const START_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 15000;

const { twinhubBin } = require('./bin');

// --- the CA ---

let ca = null;

// testCA returns the CA every hub of this run gets its server certificate
// from: { dir, caPem } where dir holds ca.pem and ca-key.pem. run.js makes
// it and passes its folder in TWINHUB_TEST_CA. A test file run on its own
// uses a CA kept in the temp folder, and tells how to trust it.
function testCA() {
  if (ca) return ca;
  let dir = process.env.TWINHUB_TEST_CA;
  if (!dir) {
    dir = path.join(os.tmpdir(), 'twinhub-interop-ca');
    execFileSync(twinhubBin(), ['--data', dir, 'ca', 'init'], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const caFile = path.join(dir, 'ca.pem');
  const caPem = fs.readFileSync(caFile, 'utf8');
  const trusted = process.env.NODE_EXTRA_CA_CERTS;
  if (!trusted || fs.readFileSync(trusted, 'utf8') !== caPem) {
    throw new Error('the Azure SDKs will not trust the test hubs: run the tests with `npm test` (run.js), ' +
      `or start node with NODE_EXTRA_CA_CERTS=${caFile} TWINHUB_TEST_CA=${dir}`);
  }
  ca = { dir, caPem };
  return ca;
}

// --- processes to clean up ---

const live = new Map(); // running hub process -> its data folder

function killAll() {
  for (const [child, dataDir] of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
    if (!process.env.TWINHUB_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(128 + os.constants.signals[sig]);
  });
}

let setprivPath;
function setpriv() {
  if (setprivPath === undefined) {
    setprivPath = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p)) || null;
  }
  return setprivPath;
}

// spawnTied starts bin with args (spawn's options) so that it dies with
// this process (setpriv's parent-death signal, and the exit handlers
// above), which then removes dir.
function spawnTied(bin, args, options, dir) {
  const sp = setpriv();
  const child = sp ? spawn(sp, ['--pdeathsig', 'SIGKILL', '--', bin, ...args], options) : spawn(bin, args, options);
  live.set(child, dir);
  const forget = () => live.delete(child);
  child.on('exit', forget);
  child.on('error', forget);
  return child;
}

// --- the hub ---

class Hub {
  constructor(address, dataDir, opts) {
    this.address = address;
    // The name in connection strings and the server certificate: the
    // address, unless the hub is one node of several behind another.
    this.hostname = opts.hostname || address;
    this.dataDir = dataDir;
    this.connectionString = null;
    this._opts = opts;
    this._logFile = path.join(dataDir, 'twinhub.log');
    this._child = null;
    this._exit = null; // Promise of {code, signal} of the running process
    this._savedOutput = '';
  }

  // output is what the hub printed (stdout and stderr) in all its runs,
  // also after stop() removed the data folder.
  output() {
    try { return fs.readFileSync(this._logFile, 'utf8'); } catch { return this._savedOutput || ''; }
  }

  async _start() {
    const bin = twinhubBin();
    const args = ['serve', '--data', this.dataDir, '--hostname', this.hostname,
      '--https-addr', `${this.address}:443`, '--mqtt-addr', `${this.address}:8883`, '--amqp-addr', `${this.address}:5671`,
      ...(this._opts.args || [])];
    const log = fs.openSync(this._logFile, 'a');
    const runStart = fs.fstatSync(log).size;
    const runOutput = () => {
      try { return fs.readFileSync(this._logFile).subarray(runStart).toString('utf8'); } catch { return ''; }
    };
    const child = spawnTied(bin, args, { stdio: ['ignore', log, log] }, this.dataDir);
    fs.closeSync(log);
    this._child = child;
    this._exit = new Promise((resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal }));
      child.on('error', (err) => resolve({ code: null, signal: null, err }));
    });
    let exited = null;
    this._exit.then((e) => { exited = e; });
    const startTimeout = this._opts.startTimeout || START_TIMEOUT_MS;
    const deadline = Date.now() + startTimeout;
    const failed = (why) => new Error(`twinhub on ${this.address} ${why}\n--- twinhub output ---\n${this.output()}`);

    // The banner, printed once the listeners are open, ends with the owner
    // connection string.
    const portReady = async (port) => {
      while (!(await tlsReady(this.address, port, this.hostname))) {
        if (exited) throw failed(`exited during start (code ${exited.code}, signal ${exited.signal})${exited.err ? ': ' + exited.err.message : ''}`);
        if (Date.now() > deadline) throw failed(`did not accept TLS connections on port ${port} within ${startTimeout / 1000} s`);
        await sleep(50);
      }
    };
    await portReady(443);
    while (!/owner connection:/.test(runOutput())) {
      if (exited) throw failed(`exited during start (code ${exited.code}, signal ${exited.signal})`);
      if (Date.now() > deadline) throw failed(`printed no owner connection string within ${startTimeout / 1000} s`);
      await sleep(20);
    }
    const mqtt = this._opts.mqtt === undefined ? 'auto' : this._opts.mqtt;
    if (mqtt === true || (mqtt === 'auto' && /\bMQTT\b|\bmqtt=/.test(runOutput()))) {
      await portReady(8883);
    }
    this.connectionString = this.cli('connection-string').trim();
  }

  // cli runs `twinhub --data <dir> ...args` and returns its stdout.
  cli(...args) {
    try {
      return execFileSync(twinhubBin(), ['--data', this.dataDir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new Error(`twinhub ${args.join(' ')} failed (exit ${err.status}): ${(err.stderr || err.message).trim()}`);
    }
  }

  // cliAsync is cli without blocking the event loop.
  cliAsync(...args) {
    return new Promise((resolve, reject) => {
      execFile(twinhubBin(), ['--data', this.dataDir, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`twinhub ${args.join(' ')} failed (exit ${err.code}): ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      });
    });
  }

  policyConnectionString(name) {
    return this.cli('connection-string', '--policy', name).trim();
  }

  // createDevice registers a device through the CLI and returns its JSON.
  // opts: { edge: bool, disabled: bool, x509Thumbprints: [primary, secondary] }.
  async createDevice(id, opts = {}) {
    const args = ['device', 'create', id];
    if (opts.edge) args.push('--edge');
    if (opts.disabled) args.push('--disabled');
    if (opts.x509Thumbprints) args.push('--x509-thumbprint', opts.x509Thumbprints.join(','));
    return JSON.parse(await this.cliAsync(...args));
  }

  // createModule registers a module through the CLI and returns its JSON.
  async createModule(id, mid) {
    return JSON.parse(await this.cliAsync('module', 'create', id, mid));
  }

  deviceConnectionString(id) {
    return this.cli('device', 'connection-string', id).trim();
  }

  moduleConnectionString(id, mid) {
    return this.cli('module', 'connection-string', id, mid).trim();
  }

  // _stop sends SIGTERM and waits for the process to end, failing unless
  // it exits with code 0.
  async _stop() {
    if (!this._child) return;
    const child = this._child;
    this._child = null;
    let timer;
    const res = await Promise.race([
      this._exit,
      new Promise((resolve) => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (res === null) {
      child.kill('SIGKILL');
      await this._exit;
      throw new Error(`twinhub on ${this.address} did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM\n--- twinhub output ---\n${this.output()}`);
    }
    if (res.code !== 0) {
      throw new Error(`twinhub on ${this.address} exited with code ${res.code}, signal ${res.signal}\n--- twinhub output ---\n${this.output()}`);
    }
  }

  // stop ends the hub and removes its data folder (kept when
  // TWINHUB_KEEP_DATA is set), failing unless the hub exited with code 0.
  async stop() {
    try {
      await this._stop();
    } finally {
      this._savedOutput = this.output();
      if (!process.env.TWINHUB_KEEP_DATA) fs.rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  // restart stops the hub and starts it again on the same data folder and address.
  async restart() {
    await this._stop();
    try {
      await this._start();
    } catch (err) {
      await this._kill();
      throw err;
    }
  }

  // kill ends the hub with SIGKILL (no shutdown at all) and keeps its data
  // folder, for start() to bring it back.
  async kill() {
    await this._kill();
  }

  // start starts a hub that kill() or a failed restart ended.
  async start() {
    if (this._child) throw new Error(`twinhub on ${this.address} is running`);
    try {
      await this._start();
    } catch (err) {
      await this._kill();
      throw err;
    }
  }

  // _kill ends a process that failed to start.
  async _kill() {
    if (!this._child) return;
    this._child.kill('SIGKILL');
    this._child = null;
    await this._exit;
  }
}

// startHub starts `twinhub serve` on address with a fresh data folder that
// shares the test CA. opts: { address (required), mqtt: true | false |
// 'auto', args: extra `serve` flags, hostname: the hub's name when not
// its address (a node behind a load balancer), startTimeout: ms }.
async function startHub(opts = {}) {
  if (!opts.address) throw new Error('startHub: give { address }, a loopback address of its own, e.g. 127.0.0.31');
  const { dir: caDir } = testCA();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-test-'));
  fs.copyFileSync(path.join(caDir, 'ca.pem'), path.join(dataDir, 'ca.pem'));
  fs.copyFileSync(path.join(caDir, 'ca-key.pem'), path.join(dataDir, 'ca-key.pem'));
  fs.chmodSync(path.join(dataDir, 'ca-key.pem'), 0o600);
  const hub = new Hub(opts.address, dataDir, opts);
  try {
    await hub._start();
  } catch (err) {
    await hub._kill();
    if (!process.env.TWINHUB_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return hub;
}

// tlsReady tells whether host:port completes a TLS handshake with a
// certificate that the test CA issued for name (default host).
function tlsReady(host, port, name = host) {
  return new Promise((resolve) => {
    const sock = tls.connect({
      host, port, ca: testCA().caPem, servername: net.isIP(name) ? undefined : name, timeout: 2000,
      checkServerIdentity: (_, cert) => tls.checkServerIdentity(name, cert),
    });
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.once('secureConnect', () => done(sock.authorized));
    sock.once('error', () => done(false));
    sock.once('timeout', () => done(false));
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

module.exports = { startHub, testCA, twinhubBin, Hub, spawnTied, tlsReady };
