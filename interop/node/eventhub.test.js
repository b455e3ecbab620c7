'use strict';
// Telemetry that azure-iot-device sends over Mqtt, read back through the
// Event Hubs-compatible endpoint (AMQP on 5671) with the official Event
// Hubs SDK, @azure/event-hubs (EventHubConsumerClient, from the string
// `twinhub connection-string --eventhub` prints), and with rhea the way
// Azure's samples turn an IoT Hub connection string into an Event Hubs
// one: a receiver on messages/events, redirected with amqp:link:redirect.
// Address 127.0.0.54.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const rhea = require('rhea');
const WebSocket = require('ws');

const { startHub, testCA } = require('./lib/hub');
const { uniqueId, printOutputOnFailure } = require('./lib/util');

// readEvents subscribes to one partition from a position and resolves
// with the first n events it receives of device id; with
// { trackLastEnqueuedEventProperties: true } in opts, got.last is the
// partition context's lastEnqueuedEventProperties at the last of them.
async function readEvents(client, partitionId, startPosition, id, n, ms = 30000, opts = {}) {
  const got = [];
  let subscription;
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${got.length} of ${n} events within ${ms} ms`)), ms);
      subscription = client.subscribe(partitionId, {
        processEvents: async (events, context) => {
          for (const e of events) {
            if (e.systemProperties['iothub-connection-device-id'] === id) got.push(e);
          }
          got.last = context.lastEnqueuedEventProperties;
          if (got.length >= n) {
            clearTimeout(timer);
            resolve();
          }
        },
        processError: async (err) => {
          clearTimeout(timer);
          reject(err);
        },
      }, { startPosition, maxWaitTimeInSeconds: 1, ...opts });
    });
  } finally {
    if (subscription) await subscription.close();
  }
  const out = got.slice(0, n);
  out.last = got.last;
  return out;
}

// partitionOf is the partition of a device's events: FNV-1a (32 bit) of
// its id modulo the partition count, as docs/messaging.md says.
function partitionOf(id, count) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(id, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return String(h % count);
}

describe('Event Hubs-compatible endpoint', () => {
  let hub;

  before(async () => {
    hub = await startHub({ address: '127.0.0.54', mqtt: true });
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  it('EventHubConsumerClient reads device telemetry with its properties, from the start and from a sequence number', async () => {
    const id = uniqueId('eh');
    const { generationId } = await hub.createDevice(id);
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    await device.open();
    try {
      for (let i = 0; i < 3; i++) {
        const m = new Message(JSON.stringify({ i }));
        m.messageId = `mid-${i}`;
        m.correlationId = 'cid';
        m.contentType = 'application/json';
        m.contentEncoding = 'utf-8';
        m.properties.add('alert', i === 2 ? 'high' : 'low');
        await device.sendEvent(m);
      }
    } finally {
      await device.close();
    }

    const cs = hub.cli('connection-string', '--eventhub').trim();
    assert.match(cs, /^Endpoint=sb:\/\/127\.0\.0\.54\/;SharedAccessKeyName=service;SharedAccessKey=[^;]+;EntityPath=twinhub$/);
    const client = new EventHubConsumerClient('$Default', cs);
    try {
      const props = await client.getEventHubProperties();
      assert.equal(props.name, 'twinhub');
      assert.deepEqual(props.partitionIds, ['0', '1', '2', '3']);
      const p = partitionOf(id, props.partitionIds.length);
      const pp = await client.getPartitionProperties(p);
      assert.equal(pp.lastEnqueuedSequenceNumber, 3);
      assert.equal(pp.beginningSequenceNumber, 1);
      assert.equal(pp.lastEnqueuedOffset, '3');

      const all = await readEvents(client, p, earliestEventPosition, id, 3);
      assert.deepEqual(all.map((e) => e.body), [{ i: 0 }, { i: 1 }, { i: 2 }]);
      const e = all[2];
      assert.equal(e.sequenceNumber, 3);
      assert.equal(e.offset, '3');
      assert.ok(e.enqueuedTimeUtc instanceof Date && Date.now() - e.enqueuedTimeUtc.getTime() < 60000, `${e.enqueuedTimeUtc}`);
      assert.equal(e.messageId, 'mid-2');
      assert.equal(e.correlationId, 'cid');
      assert.equal(e.contentType, 'application/json');
      assert.deepEqual(e.properties, { alert: 'high' });
      assert.equal(e.systemProperties['iothub-connection-device-id'], id);
      assert.equal(e.systemProperties['iothub-message-source'], 'Telemetry');
      assert.match(e.systemProperties['iothub-connection-auth-method'], /"type":"sas"/);
      assert.ok(generationId);
      assert.equal(e.systemProperties['iothub-connection-auth-generation-id'], generationId);

      const later = await readEvents(client, p, { sequenceNumber: 1 }, id, 2);
      assert.deepEqual(later.map((x) => x.sequenceNumber), [2, 3]);

      // The runtime metric: each event tells the partition's last one.
      const tracked = await readEvents(client, p, earliestEventPosition, id, 1, 30000, { trackLastEnqueuedEventProperties: true });
      const last = tracked.last || {};
      assert.equal(last.sequenceNumber, 3, JSON.stringify(last));
      assert.equal(last.offset, '3');
      assert.ok(last.enqueuedOn instanceof Date && last.retrievedOn instanceof Date, JSON.stringify(last));
    } finally {
      await client.close();
    }
  });

  it('consumer groups made with `twinhub consumer-group` are read from; an unknown one is refused', async () => {
    hub.cli('consumer-group', 'create', 'analytics');
    const groups = JSON.parse(hub.cli('consumer-group', 'list')).map((g) => g.name);
    assert.deepEqual(groups, ['$Default', 'analytics']);
    const id = uniqueId('cg');
    await hub.createDevice(id);
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    await device.open();
    try {
      await device.sendEvent(new Message('for analytics'));
    } finally {
      await device.close();
    }
    const cs = hub.cli('connection-string', '--eventhub').trim();
    const client = new EventHubConsumerClient('analytics', cs);
    try {
      const { partitionIds } = await client.getEventHubProperties();
      const [e] = await readEvents(client, partitionOf(id, partitionIds.length), earliestEventPosition, id, 1);
      assert.equal(e.body.toString(), 'for analytics');
    } finally {
      await client.close();
    }
    hub.cli('consumer-group', 'delete', 'analytics');
    const gone = new EventHubConsumerClient('analytics', cs);
    try {
      await assert.rejects(readEvents(gone, '0', earliestEventPosition, id, 1, 10000), (err) => {
        assert.match(`${err.code} ${err.message}`, /not.?found|does not exist/i);
        return true;
      });
    } finally {
      await gone.close();
    }
  });

  it('EventHubConsumerClient over WebSocket (wss://HOST/$servicebus/websocket)', async () => {
    const id = uniqueId('ws');
    await hub.createDevice(id);
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    await device.open();
    try {
      await device.sendEvent(new Message('over websocket'));
    } finally {
      await device.close();
    }
    const cs = hub.cli('connection-string', '--eventhub').trim();
    const client = new EventHubConsumerClient('$Default', cs, { webSocketOptions: { webSocket: WebSocket } });
    try {
      const { partitionIds } = await client.getEventHubProperties();
      const [e] = await readEvents(client, partitionOf(id, partitionIds.length), earliestEventPosition, id, 1);
      assert.equal(e.body.toString(), 'over websocket');
      assert.equal(e.systemProperties['iothub-connection-device-id'], id);
    } finally {
      await client.close();
    }
  });

  it('rhea on the IoT Hub host is redirected from messages/events to the entity, and reads there', async () => {
    const id = uniqueId('rd');
    await hub.createDevice(id);
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Mqtt);
    await device.open();
    try {
      await device.sendEvent(new Message('via the redirect'));
    } finally {
      await device.close();
    }
    // The IoT Hub connection string of the service policy.
    const cs = Object.fromEntries(hub.policyConnectionString('service').split(';').map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), kv.slice(i + 1)];
    }));
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    const sr = encodeURIComponent(cs.HostName);
    const sig = encodeURIComponent(crypto.createHmac('sha256', Buffer.from(cs.SharedAccessKey, 'base64'))
      .update(`${sr}\n${expiry}`).digest('base64'));
    const token = `SharedAccessSignature sr=${sr}&sig=${sig}&se=${expiry}&skn=${cs.SharedAccessKeyName}`;
    const hubName = cs.HostName.split('.')[0];

    const container = rhea.create_container();
    const connection = container.connect({
      transport: 'tls', host: cs.HostName, port: 5671, ca: testCA().caPem,
      username: `${cs.SharedAccessKeyName}@sas.root.${hubName}`, password: token, reconnect: false,
    });
    let redirect;
    try {
      redirect = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer to the receiver within 10 s')), 10000);
        // A refusal is an attach with no source, then a detach with the
        // error: rhea reports the attach as receiver_open, then the error.
        const receiver = connection.open_receiver({ source: { address: 'messages/events/' } });
        receiver.on('receiver_error', (ctx) => {
          clearTimeout(timer);
          resolve(ctx.receiver.error);
        });
        receiver.on('message', () => {
          clearTimeout(timer);
          reject(new Error('the receiver on messages/events received, it was not redirected'));
        });
      });
    } finally {
      connection.close();
    }
    assert.equal(redirect.condition, 'amqp:link:redirect');
    const info = redirect.info;
    assert.equal(info.hostname, cs.HostName);
    assert.equal(info.port, 5671);
    const m = /^amqps:\/\/([^/:]+):5671\/([^/]+)\/$/.exec(info.address);
    assert.ok(m, `redirect address ${info.address}`);
    const ehString = `Endpoint=sb://${m[1]}/;SharedAccessKeyName=${cs.SharedAccessKeyName};SharedAccessKey=${cs.SharedAccessKey};EntityPath=${m[2]}`;

    const client = new EventHubConsumerClient('$Default', ehString);
    try {
      const { partitionIds } = await client.getEventHubProperties();
      const [found] = await readEvents(client, partitionOf(id, partitionIds.length), earliestEventPosition, id, 1);
      assert.equal(found.body.toString(), 'via the redirect');
    } finally {
      await client.close();
    }
  });
});
