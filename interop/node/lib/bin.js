'use strict';
// The twinhub binary under test: $TWINHUB_BIN, or one built from this
// repository once per process (`go build -o <tmp>/twinhub ./cmd/twinhub`).

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

let binPath = null;

function twinhubBin() {
  if (binPath) return binPath;
  if (process.env.TWINHUB_BIN) {
    binPath = path.resolve(process.env.TWINHUB_BIN);
    if (!fs.existsSync(binPath)) throw new Error(`TWINHUB_BIN=${process.env.TWINHUB_BIN}: no such file`);
    return binPath;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-bin-'));
  const out = path.join(dir, 'twinhub');
  try {
    execFileSync('go', ['build', '-o', out, './cmd/twinhub'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`go build ./cmd/twinhub failed:\n${err.stderr || err.message}`);
  }
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  binPath = out;
  return binPath;
}

module.exports = { twinhubBin, REPO_ROOT };
