'use strict';
// Test harness: several `twinhub serve` nodes as one hub (their embedded
// NATS servers routed into one cluster, every stream at three replicas)
// behind Debian's HAProxy in TCP mode, so that the unmodified SDKs reach
// the hub at one HostName, the load balancer's address, as they would a
// hub of several machines:
//
//   const { startCluster } = require('./lib/cluster');
//   const cluster = await startCluster({ front: '127.0.0.10', nodes: ['127.0.0.2', '127.0.0.3', '127.0.0.4'] });
//   Registry.fromConnectionString(cluster.connectionString) ...
//   await cluster.nodes[1].kill(); await cluster.nodes[1].start();
//   await cluster.stop();
//
// Each node is a Hub of lib/hub.js on its own address, with the front's
// address as its host name (its server certificate names the front, which
// is what the SDKs check). HAProxy spreads new TCP connections round robin
// over the nodes that pass its health check (a TCP connect every 500 ms,
// as `twinhub cluster haproxy` configures it), and sends a connection whose node refuses it to another one. Each node
// also serves metrics on its address, port 9464, so tests can tell which
// node holds a device.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { twinhubBin } = require('./bin');
const { startHub, spawnTied, tlsReady } = require('./hub');

const PORTS = [443, 8883, 5671];
const START_TIMEOUT_MS = 90000;

let haproxyPath;
// haproxyBin is Debian's haproxy (.ci/run installs it).
function haproxyBin() {
  if (haproxyPath === undefined) {
    haproxyPath = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => fs.existsSync(p)) || null;
  }
  if (!haproxyPath) throw new Error('haproxy is not installed (apt-get install haproxy; .ci/run does)');
  return haproxyPath;
}

class Cluster {
  constructor(front, nodes) {
    this.front = front;
    this.address = front;
    this.nodes = nodes; // Hub of lib/hub.js, in the order of the addresses given
    this.connectionString = nodes[0].connectionString;
    this._proxy = null;
    this._proxyExit = null;
    this._dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-haproxy-'));
  }

  async _startProxy() {
    const cfg = path.join(this._dir, 'haproxy.cfg');
    // The configuration users get from `twinhub cluster haproxy`.
    fs.writeFileSync(cfg, execFileSync(twinhubBin(), ['cluster', 'haproxy', '--front', this.front, ...this.nodes.map((n) => n.address)]));
    execFileSync(haproxyBin(), ['-c', '-q', '-f', cfg]);
    const log = fs.openSync(path.join(this._dir, 'haproxy.log'), 'a');
    this._proxy = spawnTied(haproxyBin(), ['-db', '-f', cfg], { stdio: ['ignore', log, log] }, this._dir);
    fs.closeSync(log);
    let exited = null;
    this._proxyExit = new Promise((resolve) => this._proxy.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
    const deadline = Date.now() + 10000;
    for (const port of PORTS) {
      while (!(await tlsReady(this.front, port))) {
        if (exited) throw new Error(`haproxy exited (${JSON.stringify(exited)}):\n${this.proxyOutput()}`);
        if (Date.now() > deadline) throw new Error(`haproxy on ${this.front}:${port} does not reach the hub:\n${this.proxyOutput()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  proxyOutput() {
    try { return fs.readFileSync(path.join(this._dir, 'haproxy.log'), 'utf8'); } catch { return ''; }
  }

  // output is every node's output, each under a heading, and HAProxy's.
  output() {
    return this.nodes.map((n) => `=== node ${n.address} ===\n${n.output()}`).join('\n') + `\n=== haproxy ===\n${this.proxyOutput()}`;
  }

  // deviceConnections is the number of devices and modules connected to
  // each node over transport ('mqtt' or 'amqp'), from the nodes' metrics;
  // null for a node that does not answer.
  async deviceConnections(transport = 'mqtt') {
    return Promise.all(this.nodes.map(async (n) => {
      try {
        const res = await fetch(`http://${n.address}:9464/metrics`, { signal: AbortSignal.timeout(5000) });
        const text = await res.text();
        const m = text.match(new RegExp(`^twinhub_device_connections\\{transport="${transport}"\\} (\\d+)`, 'm'));
        return m ? Number(m[1]) : null;
      } catch {
        return null;
      }
    }));
  }

  // stop ends HAProxy and every node (SIGTERM, at once, so that none waits
  // for a quorum the others took away), failing unless each exits cleanly.
  async stop() {
    if (this._proxy) {
      this._proxy.kill('SIGTERM');
      await this._proxyExit;
      this._proxy = null;
    }
    const results = await Promise.allSettled(this.nodes.map((n) => n.stop()));
    fs.rmSync(this._dir, { recursive: true, force: true });
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw failed[0].reason;
  }
}

// startCluster starts one node on each address of nodes, routed to each
// other (--cluster ADDR:6222, --replicas 3), all named front, and HAProxy on
// front; it resolves once the hub answers through front.
async function startCluster({ front, nodes }) {
  const routes = nodes.map((a) => `nats://${a}:6222`).join(',');
  // The nodes start at once: each waits for a quorum of the others.
  const started = await Promise.allSettled(nodes.map((a) => startHub({
    address: a,
    hostname: front,
    mqtt: true,
    startTimeout: START_TIMEOUT_MS,
    args: ['--cluster', `${a}:6222`, '--routes', routes, '--replicas', '3', '--node-name', a, '--metrics-addr', `${a}:9464`],
  })));
  const hubs = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(hubs.map((h) => h.stop()));
    throw failed.reason;
  }
  const cluster = new Cluster(front, hubs);
  try {
    await cluster._startProxy();
  } catch (err) {
    await cluster.stop().catch(() => {});
    throw err;
  }
  return cluster;
}

module.exports = { startCluster };
