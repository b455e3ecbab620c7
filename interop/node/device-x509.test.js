'use strict';
// X.509 devices through azure-iot-device with azure-iot-device-mqtt and
// azure-iot-device-amqp: a device registered with a self-signed
// certificate's thumbprint, and one registered for CA authentication whose
// certificate the hub's --device-ca signed, over Mqtt, MqttWs, Amqp and
// AmqpWs. Certificates are made with the openssl
// command. Address 127.0.0.43.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Registry } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const { startHub } = require('./lib/hub');
const { uniqueId, printOutputOnFailure, reportedUpdate } = require('./lib/util');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinhub-x509-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

function openssl(...args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

// selfSigned makes a certificate for cn signed by its own key.
function selfSigned(name, cn, extra = []) {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  openssl('req', '-x509', ...EC, '-keyout', key, '-out', cert, '-subj', `/CN=${cn}`, '-days', '1', ...extra);
  return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8'), certFile: cert, keyFile: key };
}

// signed makes a certificate for cn signed by ca.
function signed(name, cn, ca) {
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  openssl('req', '-new', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`);
  openssl('x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', cert, '-days', '1');
  return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8') };
}

// thumbprint is the SHA-1 thumbprint as IoT Hub shows it: hex, no colons.
function thumbprint(pem) {
  return new crypto.X509Certificate(pem).fingerprint.replace(/:/g, '');
}

const deviceCA = selfSigned('device-ca', 'twinhub test device CA',
  ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);

describe('X.509 devices over MQTT and AMQP', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.43', mqtt: true, args: ['--device-ca', deviceCA.certFile] });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  function x509Client(id, creds, Transport) {
    const client = Client.fromConnectionString(`HostName=${hub.address};DeviceId=${id};x509=true`, Transport);
    client.setOptions({ cert: creds.cert, key: creds.key });
    return client;
  }

  async function roundTrip(id, creds, Transport) {
    const client = x509Client(id, creds, Transport);
    try {
      await client.open();
      const twin = await client.getTwin();
      await reportedUpdate(twin, { auth: 'x509' });
      const { responseBody: t } = await registry.getTwin(id);
      assert.equal(t.properties.reported.auth, 'x509');
      assert.equal(t.connectionState, 'Connected');
      return t;
    } finally {
      await client.close();
    }
  }

  // refused checks that a certificate does not admit a device, which
  // stays disconnected: over MQTT the CONNECT is refused; over AMQP, which
  // authenticates X.509 devices at their links (as IoT Hub does), the
  // connection opens and the first link, here telemetry's, is refused.
  async function refused(client, id, name) {
    try {
      if (name.startsWith('Amqp')) {
        await client.open();
        await assert.rejects(client.sendEvent(new Message('refused')), (err) => {
          assert.match(`${err.name} ${err.message}`, /Unauthorized/i);
          return true;
        });
      } else {
        await assert.rejects(client.open(), (err) => {
          assert.match(`${err.name} ${err.message}`, /Unauthorized|Not authorized/i);
          return true;
        });
      }
    } finally {
      await client.close().catch(() => {});
    }
    assert.equal((await registry.get(id)).responseBody.connectionState, 'Disconnected');
  }

  for (const [name, Transport] of [['Mqtt', Mqtt], ['MqttWs', MqttWs], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) {
    it(`${name}: a self-signed certificate registered by thumbprint connects; another is refused`, async () => {
      const id = uniqueId('self');
      const creds = selfSigned(id, id);
      const other = selfSigned(`${id}-other`, id);
      await registry.create({ deviceId: id, authentication: { x509Thumbprint: { primaryThumbprint: thumbprint(creds.cert) } } });
      const t = await roundTrip(id, creds, Transport);
      assert.equal(t.authenticationType, 'selfSigned');

      await refused(x509Client(id, other, Transport), id, name);
    });

    it(`${name}: a certificate signed by --device-ca with the device id as CN connects; another CN is refused`, async () => {
      const id = uniqueId('ca');
      await registry.create({ deviceId: id, authentication: { type: 'certificateAuthority' } });
      await roundTrip(id, signed(id, id, deviceCA), Transport);

      const wrongCN = signed(`${id}-cn`, 'someone-else', deviceCA);
      await refused(x509Client(id, wrongCN, Transport), id, name);
    });
  }
});
