package goiothub

import (
	"bufio"
	"encoding/json"
	"hash/fnv"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/amenzhinsky/iothub/iotdevice"
)

// The Python Event Hubs SDK, azure-eventhub (Debian python3-azure, 5.11:
// its own pure-Python AMQP stack), reads telemetry through the Event
// Hubs-compatible endpoint: ../python/read_events.py does the reading
// and prints what it read; the checks are here. Address 127.0.0.71.

// debianPython is Debian's interpreter, whose dist-packages hold
// python3-azure (a python3 earlier on PATH may be another one).
const debianPython = "/usr/bin/python3"

// needAzureEventHub skips the test where python3-azure is missing, unless
// TWINHUB_REQUIRE_CLIENTS is set (.ci/run installs it and sets it).
func needAzureEventHub(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import azure.eventhub").CombinedOutput()
	if err == nil {
		return
	}
	if os.Getenv("TWINHUB_REQUIRE_CLIENTS") != "" {
		t.Fatalf("azure-eventhub is not importable by %s (apt-get install python3-azure): %v\n%s", debianPython, err, out)
	}
	t.Skipf("Debian python3-azure is not installed (.ci/run installs it): %s", strings.TrimSpace(string(out)))
}

// pyEvent is an event as read_events.py prints it.
type pyEvent struct {
	Body        string            `json:"body"`
	Sequence    int64             `json:"sequence_number"`
	Offset      string            `json:"offset"`
	Enqueued    string            `json:"enqueued_time"`
	MessageID   string            `json:"message_id"`
	ContentType string            `json:"content_type"`
	Properties  map[string]string `json:"properties"`
	System      map[string]string `json:"system_properties"`
}

// readWithPython runs read_events.py on a partition and returns what it
// printed.
func readWithPython(t *testing.T, h *testHub, partition, count int, start string) (eventHub, props map[string]any, events []pyEvent) {
	t.Helper()
	cmd := exec.CommandContext(testContext(t), debianPython, "../python/read_events.py", strconv.Itoa(partition), strconv.Itoa(count), start)
	cmd.Env = append(os.Environ(),
		"EVENTHUB_CONNECTION_STRING="+strings.TrimSpace(h.CLI(t, "connection-string", "--eventhub")),
		"EVENTHUB_CA_FILE="+h.CAFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read_events.py: %v\n%s\n%s", err, out, stderr.String())
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var line struct {
			EventHub  map[string]any `json:"eventhub"`
			Partition map[string]any `json:"partition"`
			Event     *pyEvent       `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("read_events.py printed %q: %v", sc.Text(), err)
		}
		switch {
		case line.EventHub != nil:
			eventHub = line.EventHub
		case line.Partition != nil:
			props = line.Partition
		case line.Event != nil:
			events = append(events, *line.Event)
		}
	}
	return eventHub, props, events
}

// TestPythonEventHubConsumer: EventHubConsumerClient, from the string of
// `twinhub connection-string --eventhub`, describes the entity and the
// device's partition and reads its events with IoT Hub's annotations and
// the device's properties, from the start and after a sequence number.
func TestPythonEventHubConsumer(t *testing.T) {
	needAzureEventHub(t)
	t.Parallel()
	h := startHub(t, "127.0.0.71")
	svc := h.Service(t)
	ctx := testContext(t)
	_, cs := h.NewDevice(t, svc, "py-1")
	dev := h.DeviceClient(t, cs)
	for i := range 3 {
		if err := dev.SendEvent(ctx, []byte(`{"i":`+strconv.Itoa(i)+`}`), iotdevice.WithSendMessageID("m-"+strconv.Itoa(i)),
			iotdevice.WithSendProperty("alert", "low")); err != nil {
			t.Fatalf("SendEvent: %v", err)
		}
	}
	// The device's partition: FNV-1a of its id modulo the 4 partitions
	// (docs/messaging.md).
	f := fnv.New32a()
	f.Write([]byte("py-1"))
	partition := int(f.Sum32() % 4)

	eh, props, events := readWithPython(t, h, partition, 3, "-1")
	if ids, _ := eh["partition_ids"].([]any); eh["eventhub_name"] != "twinhub" || len(ids) != 4 || ids[3] != "3" {
		t.Errorf("get_eventhub_properties: %v", eh)
	}
	if props["last_enqueued_sequence_number"] != float64(3) || props["is_empty"] != false || props["id"] != strconv.Itoa(partition) {
		t.Errorf("get_partition_properties: %v", props)
	}
	if len(events) != 3 {
		t.Fatalf("read %d events", len(events))
	}
	e := events[2]
	if e.Body != `{"i":2}` || e.Sequence != 3 || e.Offset != "3" || e.MessageID != "m-2" || e.Enqueued == "" ||
		e.Properties["alert"] != "low" || e.System["iothub-connection-device-id"] != "py-1" || e.System["iothub-message-source"] != "Telemetry" {
		t.Errorf("third event: %+v", e)
	}
	if _, _, later := readWithPython(t, h, partition, 1, "seq:2"); len(later) != 1 || later[0].Sequence != 3 {
		t.Errorf("after sequence number 2: %+v", later)
	}
}
