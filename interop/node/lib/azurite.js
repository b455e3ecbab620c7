'use strict';
// Azurite, the Azure Storage emulator, for the tests that need a storage
// account (file upload, import and export jobs): its blob service started
// over TLS on ADDRESS:10000 with a certificate from the test CA (`twinhub
// ca issue`), with the well-known development account.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const { BlobServiceClient, StorageSharedKeyCredential, generateBlobSASQueryParameters, ContainerSASPermissions } = require('@azure/storage-blob');

const { testCA, twinhubBin } = require('./hub');
const { sleep } = require('./util');

const BLOB_PORT = 10000;
const ACCOUNT = 'devstoreaccount1';
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

function tlsUp(host, port) {
  return new Promise((resolve) => {
    const sock = tls.connect({ host, port, ca: testCA().caPem, servername: '', timeout: 2000 });
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.once('secureConnect', () => done(sock.authorized));
    sock.once('error', () => done(false));
    sock.once('timeout', () => done(false));
  });
}

// startAzurite starts the blob service on address and resolves once it
// answers TLS. The result has the account's connection string, a
// BlobServiceClient, containerSasUrl(name, permissions) and stop().
async function startAzurite(address) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-azurite-'));
  const cert = path.join(work, 'cert.pem');
  const key = path.join(work, 'key.pem');
  execFileSync(twinhubBin(), ['--data', testCA().dir, 'ca', 'issue', address, '--cert', cert, '--key', key]);
  const logFile = path.join(work, 'azurite.log');
  const log = fs.openSync(logFile, 'a');
  const proc = spawn(process.execPath, [path.join(__dirname, '..', 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js'),
    '--blobHost', address, '--blobPort', String(BLOB_PORT), '--location', path.join(work, 'data'),
    '--cert', cert, '--key', key, '--skipApiVersionCheck', '--loose'], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const stop = () => {
    proc.kill('SIGKILL');
    fs.rmSync(work, { recursive: true, force: true });
  };
  for (let i = 0; !(await tlsUp(address, BLOB_PORT)); i++) {
    if (i > 300 || proc.exitCode !== null) {
      const out = fs.readFileSync(logFile, 'utf8');
      stop();
      throw new Error(`Azurite did not start:\n${out}`);
    }
    await sleep(100);
  }
  const endpoint = `https://${address}:${BLOB_PORT}/${ACCOUNT}`;
  const connectionString = `DefaultEndpointsProtocol=https;AccountName=${ACCOUNT};AccountKey=${ACCOUNT_KEY};BlobEndpoint=${endpoint};`;
  const credential = new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY);
  return {
    connectionString,
    blobService: BlobServiceClient.fromConnectionString(connectionString),
    // containerSasUrl is a container's URL with a SAS token granting
    // permissions (e.g. 'rl', 'rwdl') for an hour, as the portal makes.
    containerSasUrl(name, permissions) {
      const sas = generateBlobSASQueryParameters({
        containerName: name,
        permissions: ContainerSASPermissions.parse(permissions),
        expiresOn: new Date(Date.now() + 3600 * 1000),
      }, credential).toString();
      return `${endpoint}/${name}?${sas}`;
    },
    stop,
  };
}

module.exports = { startAzurite, BLOB_PORT, ACCOUNT };
