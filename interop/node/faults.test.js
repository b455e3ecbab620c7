'use strict';
// Fault injection (serve --fault-injection), as the SDKs' own resilience
// suites use it: a device sends a message with AzIoTHub_FaultOperationType
// and the hub drops its connection after the delay asked for; the device
// SDK sees the disconnect and opens again. Address 127.0.0.73.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { NoRetry } = require('azure-iot-common');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');

const { startHub } = require('./lib/hub');
const { uniqueId, printOutputOnFailure } = require('./lib/util');

function faultMessage(type, delaySeconds) {
  const m = new Message('FaultInjection');
  m.properties.add('AzIoTHub_FaultOperationType', type);
  m.properties.add('AzIoTHub_FaultOperationCloseReason', 'boom');
  m.properties.add('AzIoTHub_FaultOperationDelayInSecs', String(delaySeconds));
  return m;
}

describe('fault injection', () => {
  let hub;
  let registry;

  before(async () => {
    hub = await startHub({ address: '127.0.0.73', mqtt: true, args: ['--fault-injection'] });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  for (const [name, Transport, fault] of [['Mqtt', Mqtt, 'KillTcp'], ['Amqp', Amqp, 'KillAmqpConnection']]) {
    it(`${fault} over ${name}: the hub drops the connection, the device opens again and sends`, async () => {
      const id = uniqueId('fault');
      const { responseBody: d } = await registry.create({ deviceId: id });
      const device = Client.fromConnectionString(`HostName=${hub.address};DeviceId=${id};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`, Transport);
      // Without retries, the SDK tells of the drop instead of hiding it.
      device.setRetryPolicy(new NoRetry());
      await device.open();
      try {
        const dropped = new Promise((resolve) => device.once('disconnect', resolve));
        device.on('error', () => {});
        await device.sendEvent(faultMessage(fault, 1));
        await dropped;
        await device.open();
        await device.sendEvent(new Message('after the fault'));
      } finally {
        await device.close();
      }
    });
  }
});
