package query

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
)

// The fixed fleets the conformance tests run on. Each twin is shaped like
// GET /twins/{id} on IoT Hub, decoded by encoding/json.
//
//	id            status   conn          region plant     connectivity        tc.status freq temp   other
//	myDeviceId    enabled  Disconnected  US     Redmond43 "cellular"          Success   300  21.5   desired $version 4
//	dev2          enabled  Connected     US     Redmond43 "wifi"              Success   30   25
//	dev3          disabled Disconnected  US     Redmond44 "wired"             Pending   60   19
//	dev4          enabled  Disconnected  EU     Dublin1   "cellular"          Success   120  30     tags.floor "3"
//	dev5          enabled  Connected     EU     Dublin1   -                   Pending   600  "hot"
//	dev6          enabled  Disconnected  -      -         -                   Error     -    -
//	AZ3166Device  enabled  Disconnected  US     Redmond43 {"type":"cellular"} Success   60   22     lastActivityTime set
//	dev8          enabled  Connected     -      -         null                -         -    -      tags "some key", list, floor 16; iotEdge
//	dev9          disabled Disconnected  us     Redmond43 "wifi"              Pending   15   -5
//	dev10         enabled  Connected     US     Redmond43 "cellular"          Success   300  40
var deviceFleet = []map[string]any{
	twin("myDeviceId", "", "enabled", "Disconnected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`,
		`{"telemetryConfig":{"configId":"db00ebf5-eeeb-42be-86a1-458cccb69e57","sendFrequencyInSecs":300}}`,
		`{"connectivity":"cellular","telemetryConfig":{"configId":"db00ebf5-eeeb-42be-86a1-458cccb69e57","sendFrequencyInSecs":300,"status":"Success"},"temperature":21.5}`),
	twin("dev2", "", "enabled", "Connected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"wifi","telemetryConfig":{"sendFrequencyInSecs":30,"status":"Success"},"temperature":25}`),
	twin("dev3", "", "disabled", "Disconnected", "",
		`{"location":{"region":"US","plant":"Redmond44"}}`, `{}`,
		`{"connectivity":"wired","telemetryConfig":{"sendFrequencyInSecs":60,"status":"Pending"},"temperature":19}`),
	twin("dev4", "", "enabled", "Disconnected", "",
		`{"location":{"region":"EU","plant":"Dublin1"},"floor":"3"}`, `{}`,
		`{"connectivity":"cellular","telemetryConfig":{"sendFrequencyInSecs":120,"status":"Success"},"temperature":30}`),
	twin("dev5", "", "enabled", "Connected", "",
		`{"location":{"region":"EU","plant":"Dublin1"}}`, `{}`,
		`{"telemetryConfig":{"sendFrequencyInSecs":600,"status":"Pending"},"temperature":"hot"}`),
	twin("dev6", "", "enabled", "Disconnected", "",
		`{}`, `{}`, `{"telemetryConfig":{"status":"Error"}}`),
	twin("AZ3166Device", "", "enabled", "Disconnected", "2021-05-07T00:50:38.0543092Z",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":{"type":"cellular"},"telemetryConfig":{"sendFrequencyInSecs":60,"status":"Success"},"temperature":22}`),
	twin("dev8", "", "enabled", "Connected", "",
		`{"some key":"v","list":[1,2,3],"floor":16}`, `{}`, `{"connectivity":null}`),
	twin("dev9", "", "disabled", "Disconnected", "",
		`{"location":{"region":"us","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"wifi","telemetryConfig":{"sendFrequencyInSecs":15,"status":"Pending"},"temperature":-5}`),
	twin("dev10", "", "enabled", "Connected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"cellular","telemetryConfig":{"sendFrequencyInSecs":300,"status":"Success"},"temperature":40}`),
}

var moduleFleet = []map[string]any{
	twin("device1", "$edgeAgent", "enabled", "Connected", "", `{}`, `{}`, `{"status":"running"}`),
	twin("device1", "$edgeHub", "enabled", "Connected", "", `{}`, `{}`, `{"clients":{}}`),
	twin("device1", "scanner", "enabled", "Connected", "", `{"env":"prod"}`, `{}`, `{"status":"scanning"}`),
	twin("device2", "scanner", "enabled", "Connected", "", `{"env":"prod"}`, `{}`, `{"status":"scanning"}`),
	twin("device3", "scanner", "enabled", "Disconnected", "", `{"env":"test"}`, `{}`, `{"status":"idle"}`),
	twin("device3", "$edgeHub", "enabled", "Connected", "", `{}`, `{}`, `{}`),
}

var jobFleet = []map[string]any{
	job(`{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleTwinUpdate","status":"completed",
		"startTimeUtc":"2016-09-29T18:18:52.7418462","endTimeUtc":"2016-09-29T18:20:52.7418462",
		"createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z",
		"outcome":{"deviceMethodResponse":null}}`),
	job(`{"deviceId":"myDeviceId","jobId":"reboot1","jobType":"scheduleDeviceMethod","status":"scheduled",
		"createdDateTimeUtc":"2016-08-01T00:00:00Z","outcome":{"deviceMethodResponse":null}}`),
	job(`{"deviceId":"dev2","jobId":"myJobId","jobType":"scheduleTwinUpdate","status":"failed",
		"createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","outcome":{"deviceMethodResponse":null}}`),
}

func init() {
	deviceFleet[0]["properties"].(map[string]any)["desired"].(map[string]any)["$version"] = 4.0
	deviceFleet[7]["capabilities"].(map[string]any)["iotEdge"] = true
	deviceFleet[7]["modelId"] = "dtmi:com:example:Thermostat;1"
}

func mustJSON(s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(fmt.Sprintf("bad test JSON %s: %v", s, err))
	}
	return m
}

// twin builds a twin document; tags, desired and reported are JSON objects.
func twin(deviceID, moduleID, status, conn, lastActivity, tags, desired, reported string) map[string]any {
	if lastActivity == "" {
		lastActivity = "0001-01-01T00:00:00Z"
	}
	d := map[string]any{
		"deviceId":                  deviceID,
		"etag":                      "AAAAAAAAAAc=",
		"deviceEtag":                "NzQzMjEzNjM=",
		"status":                    status,
		"statusUpdateTime":          "0001-01-01T00:00:00Z",
		"connectionState":           conn,
		"lastActivityTime":          lastActivity,
		"cloudToDeviceMessageCount": 0.0,
		"authenticationType":        "sas",
		"x509Thumbprint":            map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
		"modelId":                   "",
		"version":                   2.0,
		"tags":                      mustJSON(tags),
		"capabilities":              map[string]any{"iotEdge": false},
	}
	if moduleID != "" {
		d["moduleId"] = moduleID
		delete(d, "capabilities")
	}
	des, rep := mustJSON(desired), mustJSON(reported)
	des["$metadata"] = map[string]any{"$lastUpdated": "2016-09-29T18:18:52.7418462Z"}
	des["$version"] = 1.0
	rep["$metadata"] = map[string]any{"$lastUpdated": "2016-09-29T18:18:52.7418462Z"}
	rep["$version"] = 1.0
	d["properties"] = map[string]any{"desired": des, "reported": rep}
	return d
}

func job(s string) map[string]any { return mustJSON(s) }

func seq(docs []map[string]any) iter.Seq[map[string]any] { return slices.Values(docs) }

// docID names a result document in test expectations.
func docID(d map[string]any) string {
	id, _ := d["deviceId"].(string)
	if m, ok := d["moduleId"].(string); ok {
		return id + "/" + m
	}
	if j, ok := d["jobId"].(string); ok {
		return id + "/" + j
	}
	return id
}
