'use strict';
// File upload against Azurite, the Azure Storage emulator, started here
// over TLS with a certificate from the hub's CA (`twinhub ca issue`):
// azure-iot-device's uploadToBlob (SAS URI from the hub, the upload to
// the storage account, the notification to the hub), the bytes read back
// with @azure/storage-blob, the file notification received with
// azure-iothub's getFileNotificationReceiver (AMQP), and the refusals.
// Address 127.0.0.72 (the hub on 443, Azurite on 10000).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Readable } = require('node:stream');
const { randomBytes } = require('node:crypto');
const { Registry, Client: ServiceClient } = require('azure-iothub');
const { Client } = require('azure-iot-device');
const { NoRetry } = require('azure-iot-common');
const { Mqtt } = require('azure-iot-device-mqtt');

const { startHub } = require('./lib/hub');
const { startAzurite, BLOB_PORT, ACCOUNT } = require('./lib/azurite');
const { uniqueId, printOutputOnFailure } = require('./lib/util');

const ADDRESS = '127.0.0.72';
const CONTAINER = 'uploads';

describe('file upload', () => {
  let hub;
  let azurite;
  let registry;

  before(async () => {
    azurite = await startAzurite(ADDRESS);
    hub = await startHub({ address: ADDRESS, mqtt: true, args: ['--file-upload-storage', azurite.connectionString, '--file-upload-container', CONTAINER] });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
    if (azurite) azurite.stop();
  });
  printOutputOnFailure(() => hub);

  async function newDevice() {
    const id = uniqueId('up');
    const { responseBody: d } = await registry.create({ deviceId: id });
    const device = Client.fromConnectionString(`HostName=${hub.address};DeviceId=${id};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`, Mqtt);
    // Opened, as applications do: close() then also stops the SDK's
    // token renewal timer, which would keep the test's process alive.
    await device.open();
    return { id, device };
  }

  it('uploadToBlob puts the bytes in the container, and a back end gets the file notification', async () => {
    const service = ServiceClient.fromConnectionString(hub.connectionString);
    await service.open();
    const { result: receiver } = await service.getFileNotificationReceiver();
    const notifications = [];
    let wake = () => {};
    receiver.on('message', (msg) => {
      notifications.push(msg);
      wake();
    });
    const next = async () => {
      while (notifications.length === 0) await new Promise((resolve) => { wake = resolve; });
      return notifications.shift();
    };
    const { id, device } = await newDevice();
    try {
      // A failed upload first: it makes no notification, so the first
      // one the back end gets is the upload that worked.
      const failed = await device.getBlobSharedAccessSignature('failed.bin');
      await device.notifyBlobUploadStatus(failed.correlationId, false, 500, 'the device lost power');

      const data = randomBytes(300 * 1024);
      await device.uploadToBlob('reports/day 1.bin', Readable.from([data]), data.length);

      const blobs = azurite.blobService.getContainerClient(CONTAINER);
      const stored = await blobs.getBlobClient(`${id}/reports/day 1.bin`).downloadToBuffer();
      assert.ok(stored.equals(data), 'the container holds the bytes uploaded');

      const msg = await next();
      const n = JSON.parse(msg.data.toString());
      assert.equal(n.deviceId, id);
      assert.equal(n.blobName, `${id}/reports/day 1.bin`);
      assert.equal(n.blobSizeInBytes, data.length);
      assert.match(n.blobUri, new RegExp(`^https://${ADDRESS.replace(/\./g, '\\.')}:${BLOB_PORT}/${ACCOUNT}/${CONTAINER}/`));
      assert.ok(Date.parse(n.lastUpdatedTime) > 0 && Date.parse(n.enqueuedTimeUtc) > 0, `times ${n.lastUpdatedTime} ${n.enqueuedTimeUtc}`);
      await receiver.complete(msg);
    } finally {
      await device.close();
      await service.close();
    }
  });

  it('twinhub monitor-file-notifications prints the notification of an upload', async () => {
    const { id, device } = await newDevice();
    try {
      const data = randomBytes(1000);
      await device.uploadToBlob('cli.bin', Readable.from([data]), data.length);
    } finally {
      await device.close();
    }
    const lines = (await hub.cliAsync('monitor-file-notifications', '--max', '1')).trim().split('\n');
    assert.equal(lines.length, 1);
    const n = JSON.parse(lines[0]);
    assert.equal(n.deviceId, id);
    assert.equal(n.blobName, `${id}/cli.bin`);
    assert.equal(n.blobSizeInBytes, 1000);
  });

  it('the SAS URI names the device\'s own blob, and correlation ids are checked', async () => {
    const a = await newDevice();
    const b = await newDevice();
    // Calls that must fail fail at once, without the SDK's retries.
    a.device.setRetryPolicy(new NoRetry());
    b.device.setRetryPolicy(new NoRetry());
    try {
      const params = await a.device.getBlobSharedAccessSignature('x.txt');
      assert.equal(params.blobName, `${a.id}/x.txt`);
      assert.equal(params.containerName, CONTAINER);
      assert.equal(params.hostName, `${ADDRESS}:${BLOB_PORT}/${ACCOUNT}`);
      assert.match(params.sasToken, /^\?.*sig=/);
      await assert.rejects(b.device.notifyBlobUploadStatus(params.correlationId, true, 200, 'ok'), 'another device\'s correlation id');
      await assert.rejects(a.device.notifyBlobUploadStatus(params.correlationId + 'x', true, 200, 'ok'), 'a correlation id the hub did not make');
      await assert.rejects(a.device.notifyBlobUploadStatus(params.correlationId, true, 200, 'ok'), 'a success for a blob that is not there');
      await assert.rejects(a.device.getBlobSharedAccessSignature('../escape'), 'a blob name with ..');
    } finally {
      await a.device.close();
      await b.device.close();
    }
  });

  it('a device has at most 10 uploads under way; one notified frees its place', async () => {
    const { device } = await newDevice();
    device.setRetryPolicy(new NoRetry());
    try {
      const open = [];
      for (let i = 0; i < 10; i++) open.push(await device.getBlobSharedAccessSignature(`f${i}.bin`));
      await assert.rejects(device.getBlobSharedAccessSignature('f10.bin'), (e) => e.response && e.response.statusCode === 403 && /403006|DeviceMaximumActiveFileUploadLimitExceeded/.test(e.responseBody || e.message));
      // A failed upload ends as surely as one that worked.
      await device.notifyBlobUploadStatus(open[0].correlationId, false, 500, 'gave up');
      await device.getBlobSharedAccessSignature('f10.bin');
    } finally {
      await device.close();
    }
  });
});
