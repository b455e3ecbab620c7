#!/usr/bin/env node
'use strict';
// Runs the interop tests: `npm test` (or `node run.js [files...]`).
//
// It makes one CA for the whole run (`twinhub ca init`), then runs
// `node --test --test-concurrency=1` on the test files with
// NODE_EXTRA_CA_CERTS pointing at that CA, because Node.js reads that
// variable only when a process starts. Every hub the tests start gets its
// server certificate from that CA (lib/hub.js copies it into the hub's data
// folder). The twinhub binary is $TWINHUB_BIN, or built once here and
// handed to the test processes in TWINHUB_BIN.
//
// Arguments: test files to run (default: every *.test.js in this folder).
// Each test may take up to TEST_TIMEOUT_MS.
// Environment:
//   TWINHUB_BIN            the binary to test (default: go build ./cmd/twinhub)
//   TWINHUB_KEEP_DATA=1    keep the hubs' data folders (under $TMPDIR/twinhub-run-*)
//   TWINHUB_TEST_SUMMARY   a file to write {"passed","failed","skipped"} to,
//                          counted from the runner's TAP summary
// The exit code is the test runner's.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { twinhubBin } = require('./lib/bin');

// A test that runs longer than this fails, so that a call the hub never
// answers cannot hang the run. Hooks (before, after) are not limited.
const TEST_TIMEOUT_MS = 120000;

function main() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 11)) {
    console.error(`run.js: Node.js 20.11 or later is needed (node --test --test-concurrency --test-timeout), not ${process.version}`);
    process.exit(1);
  }
  const here = __dirname;
  let files = process.argv.slice(2);
  if (files.length === 0) {
    files = fs.readdirSync(here).filter((f) => f.endsWith('.test.js')).sort();
  }
  if (files.length === 0) {
    console.error('run.js: no test files');
    process.exit(1);
  }

  const bin = twinhubBin();
  // Everything of this run lives in one folder, removed at the end: the
  // CA, the TAP report, and (through TMPDIR) the hubs' data folders, even
  // those of a test process that was killed before it could clean up.
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-run-'));
  const caDir = path.join(runDir, 'ca');
  const tmpDir = path.join(runDir, 'tmp');
  fs.mkdirSync(tmpDir);
  const tapFile = path.join(runDir, 'results.tap');
  process.on('exit', () => {
    if (process.env.TWINHUB_KEEP_DATA) console.log(`run.js: the hubs' data folders are kept in ${tmpDir}`);
    else fs.rmSync(runDir, { recursive: true, force: true });
  });
  const caFile = execFileSync(bin, ['--data', caDir, 'ca', 'init'], { encoding: 'utf8' }).trim();

  const env = {
    ...process.env,
    TWINHUB_BIN: bin,
    TWINHUB_TEST_CA: caDir,
    NODE_EXTRA_CA_CERTS: caFile,
    TMPDIR: tmpDir,
  };
  const args = [
    '--test', '--test-concurrency=1', `--test-timeout=${TEST_TIMEOUT_MS}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    ...files,
  ];
  const child = spawn(process.execPath, args, { cwd: here, env, stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => child.kill(sig));
  }
  child.on('exit', (code, signal) => {
    writeSummary(tapFile);
    process.exit(code === null ? 128 + (os.constants.signals[signal] || 1) : code);
  });
}

// writeSummary copies the counts of the TAP report's closing lines
// ("# pass N", "# fail N", ...) to $TWINHUB_TEST_SUMMARY, if that is set
// and the report is complete.
function writeSummary(tapFile) {
  const out = process.env.TWINHUB_TEST_SUMMARY;
  if (!out) return;
  fs.rmSync(out, { force: true });
  let tap;
  try { tap = fs.readFileSync(tapFile, 'utf8'); } catch { return; }
  const count = (name) => {
    const all = [...tap.matchAll(new RegExp(`^# ${name} (\\d+)$`, 'gm'))];
    return all.length ? Number(all[all.length - 1][1]) : null;
  };
  const [tests, pass, fail, cancelled, skipped, todo] =
    ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'].map(count);
  if ([tests, pass, fail, cancelled, skipped, todo].includes(null)) return;
  fs.writeFileSync(out, JSON.stringify({ passed: pass, failed: fail + cancelled, skipped: skipped + todo }) + '\n');
}

main();
