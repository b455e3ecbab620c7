"""Reads a partition of twinhub's Event Hubs-compatible endpoint with the
official Python SDK, azure-eventhub (Debian python3-azure, its pure-Python
AMQP stack), and prints what it read as JSON lines, for eventhub_test.go:

    {"eventhub": {...}}      get_eventhub_properties()
    {"partition": {...}}     get_partition_properties(PARTITION)
    {"event": {...}}         each of the first COUNT events from START

Usage: read_events.py PARTITION COUNT START, START an offset ("-1": the
start) or "seq:N" (after sequence number N); the connection string in
EVENTHUB_CONNECTION_STRING, the hub's CA in EVENTHUB_CA_FILE.
"""

import json
import os
import sys
import threading

from azure.eventhub import EventHubConsumerClient


def main():
    partition, count, start = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = EventHubConsumerClient.from_connection_string(
        os.environ["EVENTHUB_CONNECTION_STRING"],
        consumer_group="$Default",
        connection_verify=os.environ["EVENTHUB_CA_FILE"],
    )
    print(json.dumps({"eventhub": client.get_eventhub_properties()}, default=str), flush=True)
    print(json.dumps({"partition": client.get_partition_properties(partition)}, default=str), flush=True)

    if start.startswith("seq:"):
        position, inclusive = int(start[4:]), False
    else:
        position, inclusive = start, False
    got = []
    done = threading.Event()

    def on_event(context, event):
        if event is None or done.is_set():
            return
        got.append({
            "body": event.body_as_str(),
            "sequence_number": event.sequence_number,
            "offset": event.offset,
            "enqueued_time": event.enqueued_time.isoformat() if event.enqueued_time else None,
            "message_id": event.message_id,
            "content_type": event.content_type,
            "properties": {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                           for k, v in (event.properties or {}).items()},
            "system_properties": {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else str(v)
                                  for k, v in event.system_properties.items()},
            "partition": context.partition_id,
        })
        if len(got) >= count:
            done.set()

    def stop():
        done.wait(60)
        client.close()

    threading.Thread(target=stop, daemon=True).start()
    client.receive(on_event=on_event, partition_id=partition, starting_position=position,
                   starting_position_inclusive=inclusive, max_wait_time=1)
    for e in got:
        print(json.dumps({"event": e}, default=str), flush=True)
    if len(got) < count:
        sys.exit("read %d of %d events within 60 s" % (len(got), count))


if __name__ == "__main__":
    main()
