// Package querytest holds the fixed fleets of twins and the conformance
// cases of the IoT Hub query language: queries with their results written
// out, and bad queries with where their error is. The query package checks
// its evaluator against them; twinhub checks that its index and paging
// answer every case as the evaluator does over full twin documents.
package querytest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DeviceTwins and ModuleTwins are the fixed fleets the conformance cases run
// on; Devices and Modules give them shaped like GET /twins/{id} on IoT Hub,
// decoded by encoding/json.
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
var DeviceTwins = []Twin{
	spec("myDeviceId", "", "enabled", "Disconnected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`,
		`{"telemetryConfig":{"configId":"db00ebf5-eeeb-42be-86a1-458cccb69e57","sendFrequencyInSecs":300}}`,
		`{"connectivity":"cellular","telemetryConfig":{"configId":"db00ebf5-eeeb-42be-86a1-458cccb69e57","sendFrequencyInSecs":300,"status":"Success"},"temperature":21.5}`),
	spec("dev2", "", "enabled", "Connected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"wifi","telemetryConfig":{"sendFrequencyInSecs":30,"status":"Success"},"temperature":25}`),
	spec("dev3", "", "disabled", "Disconnected", "",
		`{"location":{"region":"US","plant":"Redmond44"}}`, `{}`,
		`{"connectivity":"wired","telemetryConfig":{"sendFrequencyInSecs":60,"status":"Pending"},"temperature":19}`),
	spec("dev4", "", "enabled", "Disconnected", "",
		`{"location":{"region":"EU","plant":"Dublin1"},"floor":"3"}`, `{}`,
		`{"connectivity":"cellular","telemetryConfig":{"sendFrequencyInSecs":120,"status":"Success"},"temperature":30}`),
	spec("dev5", "", "enabled", "Connected", "",
		`{"location":{"region":"EU","plant":"Dublin1"}}`, `{}`,
		`{"telemetryConfig":{"sendFrequencyInSecs":600,"status":"Pending"},"temperature":"hot"}`),
	spec("dev6", "", "enabled", "Disconnected", "",
		`{}`, `{}`, `{"telemetryConfig":{"status":"Error"}}`),
	spec("AZ3166Device", "", "enabled", "Disconnected", "2021-05-07T00:50:38.0543092Z",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":{"type":"cellular"},"telemetryConfig":{"sendFrequencyInSecs":60,"status":"Success"},"temperature":22}`),
	spec("dev8", "", "enabled", "Connected", "",
		`{"some key":"v","list":[1,2,3],"floor":16}`, `{}`, `{"connectivity":null}`),
	spec("dev9", "", "disabled", "Disconnected", "",
		`{"location":{"region":"us","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"wifi","telemetryConfig":{"sendFrequencyInSecs":15,"status":"Pending"},"temperature":-5}`),
	spec("dev10", "", "enabled", "Connected", "",
		`{"location":{"region":"US","plant":"Redmond43"}}`, `{}`,
		`{"connectivity":"cellular","telemetryConfig":{"sendFrequencyInSecs":300,"status":"Success"},"temperature":40}`),
}

// ModuleTwins are module twins, some of IoT Edge devices.
var ModuleTwins = []Twin{
	spec("device1", "$edgeAgent", "enabled", "Connected", "", `{}`, `{}`, `{"status":"running"}`),
	spec("device1", "$edgeHub", "enabled", "Connected", "", `{}`, `{}`, `{"clients":{}}`),
	spec("device1", "scanner", "enabled", "Connected", "", `{"env":"prod"}`, `{}`, `{"status":"scanning"}`),
	spec("device2", "scanner", "enabled", "Connected", "", `{"env":"prod"}`, `{}`, `{"status":"scanning"}`),
	spec("device3", "scanner", "enabled", "Disconnected", "", `{"env":"test"}`, `{}`, `{"status":"idle"}`),
	spec("device3", "$edgeHub", "enabled", "Connected", "", `{}`, `{}`, `{}`),
}

var jobs = []string{
	`{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleTwinUpdate","status":"completed",
		"startTimeUtc":"2016-09-29T18:18:52.7418462","endTimeUtc":"2016-09-29T18:20:52.7418462",
		"createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z",
		"outcome":{"deviceMethodResponse":null}}`,
	`{"deviceId":"myDeviceId","jobId":"reboot1","jobType":"scheduleDeviceMethod","status":"scheduled",
		"createdDateTimeUtc":"2016-08-01T00:00:00Z","outcome":{"deviceMethodResponse":null}}`,
	`{"deviceId":"dev2","jobId":"myJobId","jobType":"scheduleTwinUpdate","status":"failed",
		"createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","outcome":{"deviceMethodResponse":null}}`,
}

func init() {
	DeviceTwins[0].DesiredVersion = 4
	DeviceTwins[7].IoTEdge = true
	DeviceTwins[7].ModelID = "dtmi:com:example:Thermostat;1"
}

// Twin is a twin of the fleets, described by what a hub needs to make it.
type Twin struct {
	DeviceID, ModuleID string
	Status             string // of the device
	ConnectionState    string
	LastActivityTime   string // "" for never
	// Tags, Desired and Reported are JSON objects.
	Tags, Desired, Reported string
	DesiredVersion          int // $version of desired properties; 0 for 1
	IoTEdge                 bool
	ModelID                 string
}

func spec(deviceID, moduleID, status, conn, lastActivity, tags, desired, reported string) Twin {
	return Twin{DeviceID: deviceID, ModuleID: moduleID, Status: status, ConnectionState: conn,
		LastActivityTime: lastActivity, Tags: tags, Desired: desired, Reported: reported}
}

// Devices returns the device twins of the fleet as documents, in fleet order.
func Devices() []map[string]any { return docs(DeviceTwins) }

// Modules returns the module twins of the fleet as documents, in fleet order.
func Modules() []map[string]any { return docs(ModuleTwins) }

// Jobs returns the per-device job documents of the fleet.
func Jobs() []map[string]any {
	out := make([]map[string]any, len(jobs))
	for i, j := range jobs {
		out[i] = mustJSON(j)
	}
	return out
}

func docs(ts []Twin) []map[string]any {
	out := make([]map[string]any, len(ts))
	for i, t := range ts {
		out[i] = t.Doc()
	}
	return out
}

func mustJSON(s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(fmt.Sprintf("bad test JSON %s: %v", s, err))
	}
	return m
}

// Doc builds the twin document, with the system properties a twin of IoT
// Hub has.
func (t Twin) Doc() map[string]any {
	lastActivity := t.LastActivityTime
	if lastActivity == "" {
		lastActivity = "0001-01-01T00:00:00Z"
	}
	d := map[string]any{
		"deviceId":                  t.DeviceID,
		"etag":                      "AAAAAAAAAAc=",
		"deviceEtag":                "NzQzMjEzNjM=",
		"status":                    t.Status,
		"statusUpdateTime":          "0001-01-01T00:00:00Z",
		"connectionState":           t.ConnectionState,
		"lastActivityTime":          lastActivity,
		"cloudToDeviceMessageCount": 0.0,
		"authenticationType":        "sas",
		"x509Thumbprint":            map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
		"modelId":                   t.ModelID,
		"version":                   2.0,
		"tags":                      mustJSON(t.Tags),
		"capabilities":              map[string]any{"iotEdge": t.IoTEdge},
	}
	if t.ModuleID != "" {
		d["moduleId"] = t.ModuleID
		delete(d, "capabilities")
	}
	des, rep := mustJSON(t.Desired), mustJSON(t.Reported)
	des["$metadata"] = map[string]any{"$lastUpdated": "2016-09-29T18:18:52.7418462Z"}
	des["$version"] = 1.0
	if t.DesiredVersion > 0 {
		des["$version"] = float64(t.DesiredVersion)
	}
	rep["$metadata"] = map[string]any{"$lastUpdated": "2016-09-29T18:18:52.7418462Z"}
	rep["$version"] = 1.0
	d["properties"] = map[string]any{"desired": des, "reported": rep}
	return d
}

// DocID names a result document in the IDs of cases: the device id, with
// the module or job id after a slash.
func DocID(d map[string]any) string {
	id, _ := d["deviceId"].(string)
	if m, ok := d["moduleId"].(string); ok {
		return id + "/" + m
	}
	if j, ok := d["jobId"].(string); ok {
		return id + "/" + j
	}
	return id
}

// Case is a query with its results over the fleets. IDs lists the documents
// a SELECT * returns, in fleet order (as DocID names them); Raw is the JSON
// of projection and aggregate results. Queries marked "doc:" come from the
// IoT Hub query language reference or from "Queries for IoT Hub device and
// module twins".
type Case struct {
	Query string
	IDs   []string
	Raw   string
	Item  string // x-ms-item-type, when worth checking
}

// Cases run over Devices, Modules or Jobs as their FROM clause says.
var Cases = []Case{
	// doc: every twin.
	{Query: `SELECT * FROM devices`, Item: "Twin",
		IDs: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev5", "dev6", "AZ3166Device", "dev8", "dev9", "dev10"}},
	// The device twins tutorial.
	{Query: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'`,
		IDs: []string{"myDeviceId", "dev2", "AZ3166Device", "dev9", "dev10"}},
	{Query: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity = 'cellular'`,
		IDs: []string{"myDeviceId", "dev10"}},
	{Query: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity.type = 'cellular'`,
		IDs: []string{"AZ3166Device"}},
	// doc: filters.
	{Query: "SELECT * FROM devices\nWHERE tags.location.region = 'US'",
		IDs: []string{"myDeviceId", "dev2", "dev3", "AZ3166Device", "dev10"}},
	{Query: "SELECT * FROM devices\n  WHERE tags.location.region = 'US'\n    AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
		IDs: []string{"myDeviceId", "dev3", "AZ3166Device", "dev10"}},
	{Query: "SELECT * FROM devices\n  WHERE properties.reported.connectivity IN ['wired', 'wifi']",
		IDs: []string{"dev2", "dev3", "dev9"}},
	{Query: "SELECT * FROM devices\n  WHERE is_defined(properties.reported.connectivity)",
		IDs: []string{"myDeviceId", "dev2", "dev3", "dev4", "AZ3166Device", "dev8", "dev9", "dev10"}},
	// doc: grouping; the undefined status of dev8 forms its own group, whose row lacks "status".
	{Query: "SELECT properties.reported.telemetryConfig.status AS status,\n    COUNT() AS numberOfDevices\n  FROM devices\n  GROUP BY properties.reported.telemetryConfig.status",
		Item: "Raw",
		Raw: `[{"status":"Success","numberOfDevices":5},{"status":"Pending","numberOfDevices":3},
			{"status":"Error","numberOfDevices":1},{"numberOfDevices":1}]`},
	// doc: count.
	{Query: `SELECT COUNT() as totalNumberOfDevices FROM devices`, Raw: `[{"totalNumberOfDevices":10}]`},
	// doc: projections; identifiers naming twin fields are case-insensitive.
	{Query: `SELECT LastActivityTime FROM devices WHERE status = 'enabled'`,
		Raw: `[{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"2021-05-07T00:50:38.0543092Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"}]`},
	{Query: `SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'`,
		Raw: `[{"deviceId":"myDeviceId","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"dev4","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"dev6","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"AZ3166Device","lastActivityTime":"2021-05-07T00:50:38.0543092Z"}]`},

	// doc: module twins.
	{Query: `SELECT * FROM devices.modules`, Item: "Twin",
		IDs: []string{"device1/$edgeAgent", "device1/$edgeHub", "device1/scanner", "device2/scanner", "device3/scanner", "device3/$edgeHub"}},
	{Query: `SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'`,
		IDs: []string{"device1/scanner", "device2/scanner"}},
	{Query: `Select * from devices.modules where properties.reported.status = 'scanning'`,
		IDs: []string{"device1/scanner", "device2/scanner"}},
	{Query: "SELECT * FROM devices.modules\n  WHERE properties.reported.status = 'scanning'\n  AND deviceId IN ['device1', 'device2']",
		IDs: []string{"device1/scanner", "device2/scanner"}},
	{Query: "Select * from devices.modules \n  where properties.reported.status = 'scanning' \n  and deviceId IN ['device2', 'device3']",
		IDs: []string{"device2/scanner"}},
	// The collection prefix in paths, as the IoT Edge SDKs and jobs docs write them.
	{Query: `SELECT * FROM devices.modules WHERE devices.modules.moduleId = '$edgeHub' AND deviceId in ['device3']`,
		IDs: []string{"device3/$edgeHub"}},
	{Query: `SELECT * FROM devices WHERE devices.tags.location.region = 'EU'`, IDs: []string{"dev4", "dev5"}},
	{Query: `SELECT devices.deviceId FROM devices WHERE devices.status = 'disabled'`,
		Raw: `[{"deviceId":"dev3"},{"deviceId":"dev9"}]`},
	// SELECT * with GROUP BY (seen in the wild): the first twin of each group.
	{Query: `SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'scanner' GROUP BY deviceId`,
		IDs: []string{"device1/scanner", "device2/scanner", "device3/scanner"}},
	{Query: `SELECT * FROM devices WHERE status = 'enabled' GROUP BY tags.location.region`,
		IDs: []string{"myDeviceId", "dev4", "dev6"}},

	// doc: jobs.
	{Query: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.deviceId = 'myDeviceId'", Item: "DeviceJob",
		IDs: []string{"myDeviceId/myJobId", "myDeviceId/reboot1"}},
	// The docs' example filters on createdTimeUtc, which job documents do not
	// have (they have createdDateTimeUtc): undefined > '2016-09-01' is never true.
	{Query: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.deviceId = 'myDeviceId'\n    AND devices.jobs.jobType = 'scheduleTwinUpdate'\n    AND devices.jobs.status = 'completed'\n    AND devices.jobs.createdTimeUtc > '2016-09-01'",
		IDs: []string{}},
	{Query: `SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'myDeviceId' AND devices.jobs.jobType = 'scheduleTwinUpdate' AND devices.jobs.status = 'completed' AND devices.jobs.createdDateTimeUtc > '2016-09-01'`,
		IDs: []string{"myDeviceId/myJobId"}},
	{Query: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.jobId = 'myJobId'",
		IDs: []string{"myDeviceId/myJobId", "dev2/myJobId"}},

	// Precedence: NOT > AND > OR.
	{Query: `SELECT * FROM devices WHERE tags.location.region = 'EU' OR tags.location.region = 'US' AND status = 'disabled'`,
		IDs: []string{"dev3", "dev4", "dev5"}},
	{Query: `SELECT * FROM devices WHERE (tags.location.region = 'EU' OR tags.location.region = 'US') AND status = 'disabled'`,
		IDs: []string{"dev3"}},
	{Query: `SELECT * FROM devices WHERE NOT tags.location.region = 'US' AND status = 'enabled'`,
		IDs: []string{"dev4", "dev5"}},
	{Query: `SELECT * FROM devices WHERE NOT (tags.location.region = 'US' OR tags.location.region = 'EU')`,
		IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE NOT NOT status = 'disabled'`, IDs: []string{"dev3", "dev9"}},
	// Undefined: NOT of a comparison with a missing property is not true.
	{Query: `SELECT * FROM devices WHERE NOT tags.location.region = 'US'`, IDs: []string{"dev4", "dev5", "dev9"}},
	// ... but OR with a true side is.
	{Query: `SELECT * FROM devices WHERE tags.location.region = 'EU' OR deviceId = 'dev8'`, IDs: []string{"dev4", "dev5", "dev8"}},

	// != and <>: undefined and objects never compare; null differs from a string.
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity != 'cellular'`, IDs: []string{"dev2", "dev3", "dev8", "dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity <> 'cellular'`, IDs: []string{"dev2", "dev3", "dev8", "dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity = null`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity != null`, IDs: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev9", "dev10"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity NIN ['cellular', 'wifi']`, IDs: []string{"dev3", "dev8"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.connectivity NOT IN ['cellular', 'wifi']`, IDs: []string{"dev3", "dev8"}},
	{Query: `SELECT * FROM devices WHERE deviceId IN ['a','b','c','d','e','f','g','dev3','dev4',1,null]`, IDs: []string{"dev3", "dev4"}},
	{Query: `SELECT * FROM devices WHERE deviceId NIN ['a','b','c','d','e','f','g','dev3','dev4',1,null] AND status = 'disabled'`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature IN [19, 25, '19']`, IDs: []string{"dev2", "dev3"}},

	// Ordering comparisons: numbers with numbers, strings with strings.
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature > 20`, IDs: []string{"myDeviceId", "dev2", "dev4", "AZ3166Device", "dev10"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature <= 19`, IDs: []string{"dev3", "dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature < 0`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature > '20'`, IDs: []string{"dev5"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature = -5`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature = -0x5`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature = -.5e1`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs = 3E2`, IDs: []string{"myDeviceId", "dev10"}},
	{Query: `SELECT * FROM devices WHERE tags.floor = 0x10`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE deviceId >= 'dev5' AND deviceId < 'dev9'`, IDs: []string{"dev5", "dev6", "dev8"}},
	{Query: `SELECT * FROM devices WHERE capabilities.iotEdge = true`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE capabilities.iotEdge > false`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE properties.desired.$version = 4`, IDs: []string{"myDeviceId"}},
	{Query: `SELECT * FROM devices WHERE properties.desired.telemetryConfig.sendFrequencyInSecs = properties.reported.telemetryConfig.sendFrequencyInSecs`,
		IDs: []string{"myDeviceId"}},
	// Objects compare with nothing, not even themselves.
	{Query: `SELECT * FROM devices WHERE tags = tags`, IDs: []string{}},
	{Query: `SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null AND deviceId = 'dev2'`, IDs: []string{"dev2"}},

	// Arithmetic.
	{Query: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs / 60 = 5`, IDs: []string{"myDeviceId", "dev10"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs * 2 + 1 > 600`, IDs: []string{"myDeviceId", "dev5", "dev10"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs % 7 = 4`, IDs: []string{"dev3", "AZ3166Device"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature - 1 * 2 = 17`, IDs: []string{"dev3"}},
	{Query: `SELECT * FROM devices WHERE (properties.reported.temperature - 1) * 2 = 36`, IDs: []string{"dev3"}},
	{Query: `SELECT * FROM devices WHERE properties.reported.temperature / 0 = 1 OR 1 + 'a' = 1`, IDs: []string{}},

	// Strings: both quotes and escapes; bracketed names and array indexes.
	{Query: `SELECT * FROM devices WHERE tags['some key'] = "v"`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE deviceId = 'dev\u0038'`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE deviceId = "AZ3166\u0044evice" OR deviceId = 'it\'s' OR deviceId = "\"q\\"`, IDs: []string{"AZ3166Device"}},
	{Query: `SELECT * FROM devices WHERE tags.list[0] = 1 AND tags['list'][2] = 3 AND NOT IS_DEFINED(tags.list[3])`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE properties.reported['telemetryConfig'].status = 'Error'`, IDs: []string{"dev6"}},
	// Keywords are case-insensitive, and so are the twin's own field names.
	{Query: `select * from DEVICES where TAGS.location.region = 'EU' and Properties.Reported.temperature > 0`, IDs: []string{"dev4"}},
	// ... but names inside tags and properties are not.
	{Query: `SELECT * FROM devices WHERE tags.Location.region = 'EU'`, IDs: []string{}},
	{Query: `SELECT * FROM devices WHERE true`, IDs: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev5", "dev6", "AZ3166Device", "dev8", "dev9", "dev10"}},
	{Query: `SELECT * FROM devices WHERE 'true'`, IDs: []string{}},
	{Query: `SELECT * FROM devices WHERE undefined = undefined OR properties.reported.temperature = undefined`, IDs: []string{}},
	{Query: `SELECT * FROM devices WHERE status`, IDs: []string{}},

	// TOP.
	{Query: `SELECT TOP 3 * FROM devices WHERE status = 'enabled'`, IDs: []string{"myDeviceId", "dev2", "dev4"}},
	{Query: `SELECT TOP 0 * FROM devices`, IDs: []string{}},
	{Query: `SELECT TOP 100 * FROM devices WHERE status = 'disabled'`, IDs: []string{"dev3", "dev9"}},
	{Query: `SELECT TOP 2 deviceId FROM devices`, Raw: `[{"deviceId":"myDeviceId"},{"deviceId":"dev2"}]`},
	{Query: `SELECT TOP 1 status, COUNT() AS n FROM devices GROUP BY status`, Raw: `[{"status":"enabled","n":8}]`},

	// Projections.
	{Query: `SELECT deviceId, properties.reported.temperature AS temp FROM devices WHERE tags.location.region = 'EU'`,
		Raw: `[{"deviceId":"dev4","temp":30},{"deviceId":"dev5","temp":"hot"}]`},
	{Query: `SELECT properties.reported.temperature FROM devices WHERE deviceId = 'dev2'`, Raw: `[{"temperature":25}]`},
	{Query: `SELECT tags.location FROM devices WHERE deviceId = 'dev4'`, Raw: `[{"location":{"region":"EU","plant":"Dublin1"}}]`},
	{Query: `SELECT deviceId, properties.reported.connectivity AS c FROM devices WHERE deviceId IN ['dev5', 'dev8']`,
		Raw: `[{"deviceId":"dev5"},{"deviceId":"dev8","c":null}]`},
	{Query: `SELECT deviceId, LENGTH(deviceId), properties.reported.temperature * 2 AS t2, tags['some key'], tags.list[1] FROM devices WHERE deviceId = 'dev8' OR deviceId = 'dev2'`,
		Raw: `[{"deviceId":"dev2","$1":4,"t2":50},{"deviceId":"dev8","$1":4,"some key":"v","$2":2}]`},
	{Query: `SELECT 'x' AS k, [1, deviceId] AS a FROM devices WHERE deviceId = 'dev2'`, Raw: `[{"k":"x","a":[1,"dev2"]}]`},
	{Query: `SELECT devices FROM devices WHERE deviceId = 'nothing'`, Raw: `[]`},

	// Aggregates.
	{Query: `SELECT COUNT() AS n FROM devices WHERE status = 'gone'`, Raw: `[{"n":0}]`},
	{Query: `SELECT COUNT() AS n, SUM(properties.reported.temperature) AS s, AVG(properties.reported.temperature) AS a FROM devices WHERE status = 'gone'`,
		Raw: `[{"n":0,"s":0}]`},
	{Query: `SELECT COUNT() AS n, MIN(deviceId) AS lo, MAX(deviceId) AS hi FROM devices`, Raw: `[{"n":10,"lo":"AZ3166Device","hi":"myDeviceId"}]`},
	{Query: `SELECT tags.location.region AS region, AVG(properties.reported.temperature) AS avgTemp, MIN(properties.reported.temperature) AS minTemp,
			MAX(properties.reported.temperature) AS maxTemp, SUM(properties.reported.temperature) AS total, COUNT() AS n
		FROM devices GROUP BY tags.location.region`,
		Raw: `[{"region":"US","avgTemp":25.5,"minTemp":19,"maxTemp":40,"total":127.5,"n":5},
			{"region":"EU","avgTemp":30,"minTemp":30,"maxTemp":"hot","total":30,"n":2},
			{"total":0,"n":2},
			{"region":"us","avgTemp":-5,"minTemp":-5,"maxTemp":-5,"total":-5,"n":1}]`},
	{Query: `SELECT tags.location.region AS region, status, COUNT() AS n FROM devices WHERE is_defined(tags.location.region) GROUP BY tags.location.region, status`,
		Raw: `[{"region":"US","status":"enabled","n":4},{"region":"US","status":"disabled","n":1},
			{"region":"EU","status":"enabled","n":2},{"region":"us","status":"disabled","n":1}]`},
	{Query: `SELECT properties.reported.telemetryConfig.sendFrequencyInSecs AS f, COUNT() AS n FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs >= 60 GROUP BY properties.reported.telemetryConfig.sendFrequencyInSecs`,
		Raw: `[{"f":300,"n":2},{"f":60,"n":2},{"f":120,"n":1},{"f":600,"n":1}]`},
	{Query: `SELECT COUNT() AS n FROM devices.modules GROUP BY deviceId`, Raw: `[{"n":3},{"n":1},{"n":2}]`},
	{Query: `SELECT LOWER(tags.location.region) AS r, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location) GROUP BY LOWER(tags.location.region)`,
		Raw: `[{"r":"us","n":6},{"r":"eu","n":2}]`},
	{Query: `SELECT properties.reported.connectivity AS c, COUNT() AS n FROM devices GROUP BY properties.reported.connectivity`,
		Raw: `[{"c":"cellular","n":3},{"c":"wifi","n":2},{"c":"wired","n":1},{"n":2},{"c":{"type":"cellular"},"n":1},{"c":null,"n":1}]`},

	// Functions.
	{Query: `SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'dev1')`, IDs: []string{"dev10"}},
	{Query: `SELECT * FROM devices WHERE startswith(deviceId, 'my')`, IDs: []string{"myDeviceId"}},
	{Query: `SELECT * FROM devices WHERE ENDS_WITH(deviceId, 'Device') OR ENDSWITH(deviceId, '9')`, IDs: []string{"AZ3166Device", "dev9"}},
	{Query: `SELECT * FROM devices WHERE CONTAINS(LOWER(deviceId), 'device')`, IDs: []string{"myDeviceId", "AZ3166Device"}},
	{Query: `SELECT * FROM devices WHERE LENGTH(deviceId) = 4 AND status = 'enabled'`, IDs: []string{"dev2", "dev4", "dev5", "dev6", "dev8"}},
	{Query: `SELECT * FROM devices WHERE UPPER(tags.location.region) = 'US' AND status = 'disabled'`, IDs: []string{"dev3", "dev9"}},
	{Query: `SELECT * FROM devices WHERE SUBSTRING(deviceId, 0, 3) = 'dev' AND SUBSTRING(deviceId, 3) = '10'`, IDs: []string{"dev10"}},
	{Query: `SELECT * FROM devices WHERE INDEX_OF(deviceId, 'Device') = 2`, IDs: []string{"myDeviceId"}},
	{Query: `SELECT * FROM devices WHERE INDEX_OF(deviceId, 'x') = -1 AND status = 'disabled'`, IDs: []string{"dev3", "dev9"}},
	{Query: `SELECT * FROM devices WHERE CONCAT(deviceId, '-', status) = 'dev3-disabled'`, IDs: []string{"dev3"}},
	{Query: `SELECT * FROM devices WHERE ARRAY_CONTAINS(tags.list, 2)`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE ARRAY_CONTAINS(['wifi', 'wired'], properties.reported.connectivity)`, IDs: []string{"dev2", "dev3", "dev9"}},
	{Query: `SELECT * FROM devices WHERE IS_NULL(properties.reported.connectivity)`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE IS_OBJECT(properties.reported.connectivity)`, IDs: []string{"AZ3166Device"}},
	{Query: `SELECT * FROM devices WHERE IS_STRING(properties.reported.temperature)`, IDs: []string{"dev5"}},
	{Query: `SELECT * FROM devices WHERE IS_NUMBER(properties.reported.temperature) AND properties.reported.temperature > 24`, IDs: []string{"dev2", "dev4", "dev10"}},
	{Query: `SELECT * FROM devices WHERE IS_BOOL(capabilities.iotEdge) AND capabilities.iotEdge`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE IS_PRIMITIVE(properties.reported.connectivity) AND NOT IS_STRING(properties.reported.connectivity)`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE IS_ARRAY(tags.list)`, IDs: []string{"dev8"}},
	{Query: `SELECT * FROM devices WHERE AS_NUMBER(tags.floor) > 2`, IDs: []string{"dev4", "dev8"}},
	{Query: `SELECT * FROM devices WHERE ABS(properties.reported.temperature) = 5`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE CEILING(properties.reported.temperature) = 22 AND FLOOR(properties.reported.temperature) = 21`, IDs: []string{"myDeviceId"}},
	{Query: `SELECT * FROM devices WHERE SIGN(properties.reported.temperature) = -1`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE SQRT(properties.reported.temperature) = 5`, IDs: []string{"dev2"}},
	{Query: `SELECT * FROM devices WHERE SQUARE(properties.reported.temperature) = 25`, IDs: []string{"dev9"}},
	{Query: `SELECT * FROM devices WHERE POWER(properties.reported.temperature, 2) = 1600`, IDs: []string{"dev10"}},
	{Query: `SELECT * FROM devices WHERE EXP(properties.reported.temperature) > 1e17 AND EXP(0) = 1`, IDs: []string{"dev10"}},
	{Query: `SELECT deviceId, UPPER(SUBSTRING(deviceId, 2, 6)) AS mid FROM devices WHERE deviceId = 'myDeviceId'`, Raw: `[{"deviceId":"myDeviceId","mid":"DEVICE"}]`},
}

// ParseError is a bad query with where its error is and part of its message.
type ParseError struct {
	Query     string
	Line, Col int
	Msg       string
}

// maxLength is query.MaxLength, the longest query IoT Hub accepts.
const maxLength = 8192

// ParseErrors lists bad queries; Parse must refuse each with an error at
// Line and Col whose message contains Msg.
var ParseErrors = []ParseError{
	{``, 1, 1, "expected SELECT"},
	{`   `, 1, 4, "expected SELECT"},
	{`SELECT`, 1, 7, "expected an expression"},
	{`SELECT * devices`, 1, 10, "expected FROM"},
	{`SELECT * FROM devices WHERE tags.[[a = 1`, 1, 34, "[[ without ]]"},
	{`SELECT * FROM devices WHERE tags.[[]] = 1`, 1, 34, "empty name in double brackets"},
	{`SELECT * FROM`, 1, 14, "expected a collection"},
	{`SELECT * FROM devices WHERE`, 1, 28, "expected an expression"},
	{`SELECT * FROM things`, 1, 15, `unknown collection "things"`},
	{`SELECT * FROM devices.twins`, 1, 15, `unknown collection "devices.twins"`},
	{`SELECT * FROM devices WHERE tags.x = 'abc`, 1, 38, "unterminated string"},
	{`SELECT * FROM devices WHERE FOO(deviceId)`, 1, 29, "unknown function FOO"},
	{`SELECT * FROM devices WHERE tags.a = 1 AND is_definedd(tags.b)`, 1, 44, "unknown function is_definedd"},
	{`SELECT * FROM devices WHERE STARTS_WITH(deviceId)`, 1, 29, "STARTS_WITH takes 2 arguments, got 1"},
	{`SELECT * FROM devices WHERE IS_DEFINED()`, 1, 29, "IS_DEFINED takes 1 argument, got 0"},
	{`SELECT * FROM devices WHERE SUBSTRING('a', 1, 2, 3)`, 1, 29, "SUBSTRING takes 2 to 3 arguments, got 4"},
	{`SELECT * FROM devices WHERE CONCAT('a') = 'a'`, 1, 29, "CONCAT takes at least 2 arguments, got 1"},
	{`SELECT TOP 1.5 * FROM devices`, 1, 12, "TOP needs a non-negative integer"},
	{`SELECT TOP -3 * FROM devices`, 1, 12, "TOP needs a non-negative integer"},
	{`SELECT TOP x * FROM devices`, 1, 12, "TOP needs a non-negative integer"},
	{`SELECT TOP 99999999999 * FROM devices`, 1, 12, "TOP needs a non-negative integer"},
	{`SELECT * FROM devices WHERE COUNT() > 1`, 1, 29, "aggregate COUNT is allowed only in the SELECT list"},
	{`SELECT * FROM devices WHERE x = 1 GROUP BY COUNT()`, 1, 44, "aggregate COUNT is allowed only in the SELECT list"},
	{`SELECT deviceId, COUNT() AS n FROM devices`, 1, 8, "mixes aggregates with non-aggregated values without GROUP BY"},
	{`SELECT COUNT() AS n, deviceId FROM devices`, 1, 22, "mixes aggregates"},
	{`SELECT COUNT() + 1 AS n FROM devices`, 1, 8, "an aggregate must be a whole projection item"},
	{`SELECT LOWER(MAX(deviceId)) AS n FROM devices`, 1, 14, "an aggregate must be a whole projection item"},
	{`SELECT SUM(COUNT()) AS n FROM devices`, 1, 12, "aggregate COUNT is allowed only in the SELECT list"},
	{`SELECT COUNT(deviceId) AS n FROM devices`, 1, 8, "COUNT takes no arguments"},
	{`SELECT COUNT(*) AS n FROM devices`, 1, 14, "expected an expression"},
	{`SELECT SUM() AS n FROM devices`, 1, 8, "SUM takes 1 argument, got 0"},
	{`SELECT deviceId FROM devices.jobs`, 1, 8, "devices.jobs support only SELECT *"},
	{`SELECT COUNT() AS n FROM devices.jobs`, 1, 8, "devices.jobs support only SELECT *"},
	{`SELECT * FROM devices.jobs GROUP BY deviceId`, 1, 28, "devices.jobs do not support GROUP BY"},
	{"SELECT *\nFROM devices\nWHERE status = = 'x'", 3, 16, `unexpected "="`},
	{"SELECT *\r\nFROM devices\r\n\tWHERE (status = 'x'", 3, 21, `expected ")"`},
	{`SELECT * FROM devices WHERE deviceId IN 'x'`, 1, 41, "IN needs an array"},
	{`SELECT * FROM devices WHERE deviceId NIN 5`, 1, 42, "NIN needs an array"},
	{`SELECT * FROM devices WHERE x = 0x`, 1, 33, "hexadecimal number needs digits"},
	{`SELECT * FROM devices WHERE x = 0x1G`, 1, 36, `unexpected 'G' after number`},
	{`SELECT * FROM devices WHERE x = 0xFFFFFFFFFFFFFFFFFF`, 1, 33, "too large"},
	{`SELECT * FROM devices WHERE x = 1.`, 1, 35, "digits after the decimal point"},
	{`SELECT * FROM devices WHERE x = 1e`, 1, 35, "exponent"},
	{`SELECT * FROM devices WHERE x = 1e999`, 1, 33, "out of range"},
	{`SELECT * FROM devices WHERE x = 12abc`, 1, 35, "after number"},
	{`SELECT * FROM devices WHERE x = 'a\q'`, 1, 35, `unknown escape \q`},
	{`SELECT * FROM devices WHERE x = 'a\u12'`, 1, 35, `\u needs four hexadecimal digits`},
	{`SELECT * FROM devices WHERE x = 1 extra`, 1, 35, `unexpected "extra", expected GROUP BY or end of query`},
	{`SELECT * FROM devices WHERE x = 1 GROUP BY x y`, 1, 46, `unexpected "y"`},
	{`SELECT * FROM devices GROUP x`, 1, 29, "expected BY"},
	{`SELECT deviceId, deviceId FROM devices`, 1, 18, `duplicate name "deviceId"`},
	{`SELECT deviceId, tags.x AS deviceId FROM devices`, 1, 18, `duplicate name "deviceId"`},
	{`SELECT deviceId AS FROM devices`, 1, 20, "expected an alias name"},
	{`SELECT *, deviceId FROM devices`, 1, 9, "expected FROM"},
	{`SELECT FROM devices`, 1, 8, "expected a projection or *"},
	{`SELECT * FROM devices WHERE x # 1`, 1, 31, "unexpected character '#'"},
	{`SELECT * FROM devices WHERE x = 1 !`, 1, 35, "unexpected character '!'"},
	{`SELECT * FROM devices WHERE tags.x = 'é' ?`, 1, 42, "unexpected character '?'"},
	{"SELECT * FROM devices WHERE tags.x = 1 AND\n  tags.ü = 2", 2, 8, "unexpected character 'ü'"},
	{`SELECT * FROM devices WHERE tags. = 1`, 1, 35, "expected a property name"},
	{`SELECT * FROM devices WHERE tags[x] = 1`, 1, 34, "expected a quoted property name or an array index"},
	{`SELECT * FROM devices WHERE tags['x' = 1`, 1, 38, `expected "]"`},
	{`SELECT * FROM devices WHERE tags[1.5] = 1`, 1, 34, "array index"},
	{`SELECT * FROM devices WHERE AND`, 1, 29, `unexpected "AND", expected an expression`},
	{`SELECT * FROM devices WHERE [1, 2`, 1, 34, `expected "]"`},
	{`SELECT * FROM devices WHERE x IN [1, 2] 3`, 1, 41, `unexpected number 3`},
	{`SELECT * FROM devices WHERE ` + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200), 1, 129, "nested too deeply"},
	{`SELECT * FROM devices WHERE ` + strings.Repeat("NOT ", 200) + "true", 1, 425, "nested too deeply"},
	{`SELECT * FROM devices WHERE x = '` + strings.Repeat("a", maxLength) + `'`, 1, maxLength + 1, "longer than 8192 characters"},
}
