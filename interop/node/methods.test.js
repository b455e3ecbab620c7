'use strict';
// Direct methods: azure-iothub Client.invokeDeviceMethod (REST) to devices
// and modules using azure-iot-device over Mqtt, Amqp and AmqpWs
// (onDeviceMethod), plus DeviceNotOnline and the 504 timeout. Address
// 127.0.0.51.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Client, ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');

const { startHub } = require('./lib/hub');
const { uniqueId, printOutputOnFailure, statusOf } = require('./lib/util');

// invokeFails calls a method that must fail and returns the error.
async function invokeFails(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('the method call succeeded');
}

describe('direct methods', () => {
  let hub;
  let service;

  before(async () => {
    hub = await startHub({ address: '127.0.0.51', mqtt: true });
    service = ServiceClient.fromConnectionString(hub.connectionString);
  });
  after(async () => {
    if (hub) await hub.stop();
  });
  printOutputOnFailure(() => hub);

  for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) it(`invokeDeviceMethod reaches onDeviceMethod over ${name} and returns its answer`, async () => {
    const id = uniqueId('meth');
    await hub.createDevice(id);
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Transport);
    await device.open();
    try {
      const seen = [];
      device.onDeviceMethod('reboot', (req, res) => {
        seen.push(req.payload);
        res.send(200, { rebooted: true, delay: req.payload && req.payload.delay }, () => {});
      });
      device.onDeviceMethod('fail', (req, res) => res.send(500, 'no', () => {}));
      // onDeviceMethod subscribes (attaches) lazily; give it a moment.
      await new Promise((r) => setTimeout(r, 300));

      const { result } = await service.invokeDeviceMethod(id, { methodName: 'reboot', payload: { delay: 2 }, responseTimeoutInSeconds: 10 });
      assert.deepEqual(result, { status: 200, payload: { rebooted: true, delay: 2 } });
      // No payload: the device still gets valid JSON (null).
      const r2 = await service.invokeDeviceMethod(id, { methodName: 'reboot' });
      assert.equal(r2.result.status, 200);
      assert.deepEqual(seen, [{ delay: 2 }, null]);
      const r3 = await service.invokeDeviceMethod(id, { methodName: 'fail' });
      assert.deepEqual(r3.result, { status: 500, payload: 'no' });

      // An unregistered method: the Node SDK does not answer, so 504.
      const start = Date.now();
      const err = await invokeFails(service.invokeDeviceMethod(id, { methodName: 'nobody', responseTimeoutInSeconds: 5 }));
      assert.equal(err.name, 'GatewayTimeoutError', `${err.name}: ${err.message}`);
      assert.ok(Date.now() - start >= 4000, `504 after ${Date.now() - start} ms`);
    } finally {
      await device.close();
    }
  });

  it('offline devices give 404 DeviceNotOnline', async () => {
    const id = uniqueId('offline');
    await hub.createDevice(id);
    const err = await invokeFails(service.invokeDeviceMethod(id, { methodName: 'm' }));
    assert.equal(statusOf(err), 404);
    assert.match(err.responseBody, /DeviceNotOnline/);
    const nf = await invokeFails(service.invokeDeviceMethod(uniqueId('nobody'), { methodName: 'm' }));
    assert.equal(nf.name, 'DeviceNotFoundError');
  });

  for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) it(`a device that connects over ${name} within connectTimeoutInSeconds gets the call`, async () => {
    const id = uniqueId('late');
    await hub.createDevice(id);
    const call = service.invokeDeviceMethod(id, { methodName: 'hello', connectTimeoutInSeconds: 20, responseTimeoutInSeconds: 10 });
    const device = Client.fromConnectionString(hub.deviceConnectionString(id), Transport);
    await device.open();
    try {
      device.onDeviceMethod('hello', (req, res) => res.send(201, { late: true }, () => {}));
      const { result } = await call;
      assert.deepEqual(result, { status: 201, payload: { late: true } });
    } finally {
      await device.close();
    }
  });

  for (const [name, Transport] of [['Mqtt', Mqtt], ['Amqp', Amqp], ['AmqpWs', AmqpWs]]) it(`module methods reach a ModuleClient over ${name}`, async () => {
    const id = uniqueId('mdev');
    await hub.createDevice(id);
    await hub.createModule(id, 'mod1');
    const mod = ModuleClient.fromConnectionString(hub.moduleConnectionString(id, 'mod1'), Transport);
    await mod.open();
    try {
      mod.onMethod('ping', (req, res) => res.send(200, { pong: req.payload }, () => {}));
      await new Promise((r) => setTimeout(r, 300));
      const { result } = await service.invokeDeviceMethod(id, 'mod1', { methodName: 'ping', payload: 'x' });
      assert.deepEqual(result, { status: 200, payload: { pong: 'x' } });
    } finally {
      await mod.close();
    }
  });
});
