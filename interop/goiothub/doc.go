// Package goiothub is twinhub's interoperability suite for the community Go
// SDK, github.com/amenzhinsky/iothub. Its tests build the twinhub binary,
// run it as a separate process on a loopback address (the SDK always dials
// port 443 of the connection string's HostName), and drive it with the
// SDK's iotservice client exactly as an application would, changing only
// the connection string and the CA the client trusts.
//
// Each test owns one address from 127.0.0.21 to 127.0.0.29, so tests run in
// parallel with each other and with the Node.js suite (127.0.0.3x) and the
// MQTT tests (127.0.0.4x). internal/servetest runs the hub; the SDK's side
// of the harness is in harness_test.go.
package goiothub
