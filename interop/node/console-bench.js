#!/usr/bin/env node
'use strict';
// Measures the web console's device list on a large registry: how long the
// first page (and the next) takes from the click to the rows on screen, in
// Debian's chromium driven by puppeteer-core, against a running hub.
//
//   NODE_EXTRA_CA_CERTS=DIR/ca.pem node console-bench.js --data DIR [--devices 100000] [--runs 20]
//
// DIR is the hub's data folder (its CA and owner connection string are read
// from there through the twinhub CLI). Devices bench-console-<n> are added
// through the REST bulk API until the registry holds --devices. Prints the
// median and p90 of each measure, in ms. A benchmark, not a test: nothing
// here fails on a time.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Registry } = require('azure-iothub');

const { twinhubBin } = require('./lib/bin');
const { launchBrowser } = require('./lib/browser');

function flag(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function load(registry, want) {
  const { result } = await registry.createQuery('SELECT COUNT() AS n FROM devices').next();
  const { n } = result[0];
  if (n >= want) return n;
  let next = n;
  const started = Date.now();
  async function worker() {
    while (next < want) {
      const from = next;
      next = Math.min(want, next + 100);
      const batch = [];
      for (let i = from; i < next; i++) batch.push({ deviceId: `bench-console-${String(i).padStart(7, '0')}`, status: 'enabled' });
      await registry.addDevices(batch);
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  console.log(`loaded ${want - n} devices in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return want;
}

async function main() {
  const data = flag('data');
  if (!data) throw new Error('give --data DIR, the data folder of a running hub');
  const devices = Number(flag('devices', '100000'));
  const runs = Number(flag('runs', '20'));
  const cs = execFileSync(twinhubBin(), ['connection-string', '--data', data], { encoding: 'utf8' }).trim();
  const host = /HostName=([^;]+)/.exec(cs)[1];
  const ca = fs.readFileSync(path.join(data, 'ca.pem'));
  if (!process.env.NODE_EXTRA_CA_CERTS) {
    throw new Error(`the SDK must trust the hub's CA: NODE_EXTRA_CA_CERTS=${path.join(data, 'ca.pem')} node console-bench.js ...`);
  }
  const registry = Registry.fromConnectionString(cs);
  const total = await load(registry, devices);

  const browser = await launchBrowser(host, ca);
  try {
    const page = await browser.newPage();
    await page.goto(`https://${host}/console/`);
    await page.type('#connection-string', cs);
    await page.click('#signin-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#device-table tbody tr').length > 0, { timeout: 60000 });
    const first = [];
    const next = [];
    // timed clicks a button and waits for a full page of new rows.
    async function timed(button) {
      await page.$eval('#device-table tbody', (b) => b.replaceChildren());
      const t0 = performance.now();
      await page.click(button);
      await page.waitForFunction(() => document.querySelectorAll('#device-table tbody tr').length === 50, { timeout: 60000, polling: 'mutation' });
      return performance.now() - t0;
    }
    for (let i = 0; i < runs; i++) {
      first.push(await timed('#search-form button'));
      next.push(await timed('#devices-next'));
    }
    const f = (xs) => `median ${quantile(xs, 0.5).toFixed(1)} ms, p90 ${quantile(xs, 0.9).toFixed(1)} ms`;
    console.log(`registry of ${total} devices, ${runs} runs, click to 50 rows on screen:`);
    console.log(`  first page: ${f(first)}`);
    console.log(`  next page:  ${f(next)}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
