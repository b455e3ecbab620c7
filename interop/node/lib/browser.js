'use strict';
// Debian's chromium, driven by puppeteer-core, for the web console's test
// and benchmark: launched headless with the flags a closed network needs,
// trusting exactly the public key of a hub's server certificate.

const crypto = require('node:crypto');
const tls = require('node:tls');
const puppeteer = require('puppeteer-core');

// CHROMIUM is the browser: $CHROMIUM_BIN, or Debian's.
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// spkiHash is the base64 SHA-256 of the public key of the certificate
// host:443 presents, after checking that ca issued it: chromium trusts
// exactly that key (--ignore-certificate-errors-spki-list), as it would
// trust the hub's CA if it were installed in its store.
function spkiHash(host, ca) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port: 443, ca }, () => {
      const cert = sock.getPeerX509Certificate();
      sock.end();
      resolve(crypto.createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64'));
    });
    sock.once('error', reject);
  });
}

// launchBrowser starts headless chromium trusting the certificate of the
// hub on host (whose CA is ca). Without the background-networking flags,
// chromium's own connections are refused by a closed network.
async function launchBrowser(host, ca) {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${await spkiHash(host, ca)}`],
  });
}

module.exports = { CHROMIUM, launchBrowser };
