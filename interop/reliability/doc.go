// Package reliability is twinhub's reliability and security suite. Its
// tests run the real twinhub binary as a child process and show that the
// hub loses no acknowledged write when it is killed (crash_test.go), and
// an Event Hubs reader none of the events either (eventhub_test.go), lets
// nobody act beyond their credentials (auth_test.go), answers hostile and
// malformed input with a clear error or a closed connection while serving
// everyone else (badinput_test.go, websocket_test.go), throttles floods
// instead of falling over (throttle_test.go), and stops cleanly and
// restarts quickly (shutdown_test.go). docs/RELIABILITY.md states the promises and the
// figures these tests print.
//
// By default each test runs a short variant suited to CI; TWINHUB_LONG=1
// runs the long one (more kill-and-restart rounds, more twins).
//
// Tests use the loopback addresses 127.0.0.61 to 127.0.0.70, one each
// (61 crash, 62 and 63 auth, 64 and 65 bad input, 66 throttles, 67
// shutdown, 68 restart, 69 WebSocket, 70 Event Hubs reader), with the
// ports IoT Hub uses (443, 8883, 5671), so they need root or
// CAP_NET_BIND_SERVICE like the other interop suites.
package reliability
