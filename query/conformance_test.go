package query

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// conformance lists queries with their results over the fleets in
// fleet_test.go. ids lists the documents a SELECT * returns, in order (as
// docID names them); raw is the JSON of projection and aggregate results.
// Queries marked "doc:" come from the IoT Hub query language reference or
// from "Queries for IoT Hub device and module twins".
var conformance = []struct {
	q    string
	ids  []string
	raw  string
	item string // x-ms-item-type, when worth checking
}{
	// doc: every twin.
	{q: `SELECT * FROM devices`, item: "Twin",
		ids: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev5", "dev6", "AZ3166Device", "dev8", "dev9", "dev10"}},
	// The device twins tutorial.
	{q: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'`,
		ids: []string{"myDeviceId", "dev2", "AZ3166Device", "dev9", "dev10"}},
	{q: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity = 'cellular'`,
		ids: []string{"myDeviceId", "dev10"}},
	{q: `SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity.type = 'cellular'`,
		ids: []string{"AZ3166Device"}},
	// doc: filters.
	{q: "SELECT * FROM devices\nWHERE tags.location.region = 'US'",
		ids: []string{"myDeviceId", "dev2", "dev3", "AZ3166Device", "dev10"}},
	{q: "SELECT * FROM devices\n  WHERE tags.location.region = 'US'\n    AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
		ids: []string{"myDeviceId", "dev3", "AZ3166Device", "dev10"}},
	{q: "SELECT * FROM devices\n  WHERE properties.reported.connectivity IN ['wired', 'wifi']",
		ids: []string{"dev2", "dev3", "dev9"}},
	{q: "SELECT * FROM devices\n  WHERE is_defined(properties.reported.connectivity)",
		ids: []string{"myDeviceId", "dev2", "dev3", "dev4", "AZ3166Device", "dev8", "dev9", "dev10"}},
	// doc: grouping; the undefined status of dev8 forms its own group, whose row lacks "status".
	{q: "SELECT properties.reported.telemetryConfig.status AS status,\n    COUNT() AS numberOfDevices\n  FROM devices\n  GROUP BY properties.reported.telemetryConfig.status",
		item: "Raw",
		raw: `[{"status":"Success","numberOfDevices":5},{"status":"Pending","numberOfDevices":3},
			{"status":"Error","numberOfDevices":1},{"numberOfDevices":1}]`},
	// doc: count.
	{q: `SELECT COUNT() as totalNumberOfDevices FROM devices`, raw: `[{"totalNumberOfDevices":10}]`},
	// doc: projections; identifiers naming twin fields are case-insensitive.
	{q: `SELECT LastActivityTime FROM devices WHERE status = 'enabled'`,
		raw: `[{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"2021-05-07T00:50:38.0543092Z"},
			{"lastActivityTime":"0001-01-01T00:00:00Z"},{"lastActivityTime":"0001-01-01T00:00:00Z"}]`},
	{q: `SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'`,
		raw: `[{"deviceId":"myDeviceId","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"dev4","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"dev6","lastActivityTime":"0001-01-01T00:00:00Z"},
			{"deviceId":"AZ3166Device","lastActivityTime":"2021-05-07T00:50:38.0543092Z"}]`},

	// doc: module twins.
	{q: `SELECT * FROM devices.modules`, item: "Twin",
		ids: []string{"device1/$edgeAgent", "device1/$edgeHub", "device1/scanner", "device2/scanner", "device3/scanner", "device3/$edgeHub"}},
	{q: `SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'`,
		ids: []string{"device1/scanner", "device2/scanner"}},
	{q: `Select * from devices.modules where properties.reported.status = 'scanning'`,
		ids: []string{"device1/scanner", "device2/scanner"}},
	{q: "SELECT * FROM devices.modules\n  WHERE properties.reported.status = 'scanning'\n  AND deviceId IN ['device1', 'device2']",
		ids: []string{"device1/scanner", "device2/scanner"}},
	{q: "Select * from devices.modules \n  where properties.reported.status = 'scanning' \n  and deviceId IN ['device2', 'device3']",
		ids: []string{"device2/scanner"}},
	// The collection prefix in paths, as the IoT Edge SDKs and jobs docs write them.
	{q: `SELECT * FROM devices.modules WHERE devices.modules.moduleId = '$edgeHub' AND deviceId in ['device3']`,
		ids: []string{"device3/$edgeHub"}},
	{q: `SELECT * FROM devices WHERE devices.tags.location.region = 'EU'`, ids: []string{"dev4", "dev5"}},
	{q: `SELECT devices.deviceId FROM devices WHERE devices.status = 'disabled'`,
		raw: `[{"deviceId":"dev3"},{"deviceId":"dev9"}]`},
	// SELECT * with GROUP BY (seen in the wild): the first twin of each group.
	{q: `SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'scanner' GROUP BY deviceId`,
		ids: []string{"device1/scanner", "device2/scanner", "device3/scanner"}},
	{q: `SELECT * FROM devices WHERE status = 'enabled' GROUP BY tags.location.region`,
		ids: []string{"myDeviceId", "dev4", "dev6"}},

	// doc: jobs.
	{q: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.deviceId = 'myDeviceId'", item: "DeviceJob",
		ids: []string{"myDeviceId/myJobId", "myDeviceId/reboot1"}},
	// The docs' example filters on createdTimeUtc, which job documents do not
	// have (they have createdDateTimeUtc): undefined > '2016-09-01' is never true.
	{q: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.deviceId = 'myDeviceId'\n    AND devices.jobs.jobType = 'scheduleTwinUpdate'\n    AND devices.jobs.status = 'completed'\n    AND devices.jobs.createdTimeUtc > '2016-09-01'",
		ids: []string{}},
	{q: `SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'myDeviceId' AND devices.jobs.jobType = 'scheduleTwinUpdate' AND devices.jobs.status = 'completed' AND devices.jobs.createdDateTimeUtc > '2016-09-01'`,
		ids: []string{"myDeviceId/myJobId"}},
	{q: "SELECT * FROM devices.jobs\n  WHERE devices.jobs.jobId = 'myJobId'",
		ids: []string{"myDeviceId/myJobId", "dev2/myJobId"}},

	// Precedence: NOT > AND > OR.
	{q: `SELECT * FROM devices WHERE tags.location.region = 'EU' OR tags.location.region = 'US' AND status = 'disabled'`,
		ids: []string{"dev3", "dev4", "dev5"}},
	{q: `SELECT * FROM devices WHERE (tags.location.region = 'EU' OR tags.location.region = 'US') AND status = 'disabled'`,
		ids: []string{"dev3"}},
	{q: `SELECT * FROM devices WHERE NOT tags.location.region = 'US' AND status = 'enabled'`,
		ids: []string{"dev4", "dev5"}},
	{q: `SELECT * FROM devices WHERE NOT (tags.location.region = 'US' OR tags.location.region = 'EU')`,
		ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE NOT NOT status = 'disabled'`, ids: []string{"dev3", "dev9"}},
	// Undefined: NOT of a comparison with a missing property is not true.
	{q: `SELECT * FROM devices WHERE NOT tags.location.region = 'US'`, ids: []string{"dev4", "dev5", "dev9"}},
	// ... but OR with a true side is.
	{q: `SELECT * FROM devices WHERE tags.location.region = 'EU' OR deviceId = 'dev8'`, ids: []string{"dev4", "dev5", "dev8"}},

	// != and <>: undefined and objects never compare; null differs from a string.
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity != 'cellular'`, ids: []string{"dev2", "dev3", "dev8", "dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity <> 'cellular'`, ids: []string{"dev2", "dev3", "dev8", "dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity = null`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity != null`, ids: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev9", "dev10"}},
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity NIN ['cellular', 'wifi']`, ids: []string{"dev3", "dev8"}},
	{q: `SELECT * FROM devices WHERE properties.reported.connectivity NOT IN ['cellular', 'wifi']`, ids: []string{"dev3", "dev8"}},
	{q: `SELECT * FROM devices WHERE deviceId IN ['a','b','c','d','e','f','g','dev3','dev4',1,null]`, ids: []string{"dev3", "dev4"}},
	{q: `SELECT * FROM devices WHERE deviceId NIN ['a','b','c','d','e','f','g','dev3','dev4',1,null] AND status = 'disabled'`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature IN [19, 25, '19']`, ids: []string{"dev2", "dev3"}},

	// Ordering comparisons: numbers with numbers, strings with strings.
	{q: `SELECT * FROM devices WHERE properties.reported.temperature > 20`, ids: []string{"myDeviceId", "dev2", "dev4", "AZ3166Device", "dev10"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature <= 19`, ids: []string{"dev3", "dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature < 0`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature > '20'`, ids: []string{"dev5"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature = -5`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature = -0x5`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature = -.5e1`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs = 3E2`, ids: []string{"myDeviceId", "dev10"}},
	{q: `SELECT * FROM devices WHERE tags.floor = 0x10`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE deviceId >= 'dev5' AND deviceId < 'dev9'`, ids: []string{"dev5", "dev6", "dev8"}},
	{q: `SELECT * FROM devices WHERE capabilities.iotEdge = true`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE capabilities.iotEdge > false`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE properties.desired.$version = 4`, ids: []string{"myDeviceId"}},
	{q: `SELECT * FROM devices WHERE properties.desired.telemetryConfig.sendFrequencyInSecs = properties.reported.telemetryConfig.sendFrequencyInSecs`,
		ids: []string{"myDeviceId"}},
	// Objects compare with nothing, not even themselves.
	{q: `SELECT * FROM devices WHERE tags = tags`, ids: []string{}},
	{q: `SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null AND deviceId = 'dev2'`, ids: []string{"dev2"}},

	// Arithmetic.
	{q: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs / 60 = 5`, ids: []string{"myDeviceId", "dev10"}},
	{q: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs * 2 + 1 > 600`, ids: []string{"myDeviceId", "dev5", "dev10"}},
	{q: `SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs % 7 = 4`, ids: []string{"dev3", "AZ3166Device"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature - 1 * 2 = 17`, ids: []string{"dev3"}},
	{q: `SELECT * FROM devices WHERE (properties.reported.temperature - 1) * 2 = 36`, ids: []string{"dev3"}},
	{q: `SELECT * FROM devices WHERE properties.reported.temperature / 0 = 1 OR 1 + 'a' = 1`, ids: []string{}},

	// Strings: both quotes and escapes; bracketed names and array indexes.
	{q: `SELECT * FROM devices WHERE tags['some key'] = "v"`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE deviceId = 'dev\u0038'`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE deviceId = "AZ3166\u0044evice" OR deviceId = 'it\'s' OR deviceId = "\"q\\"`, ids: []string{"AZ3166Device"}},
	{q: `SELECT * FROM devices WHERE tags.list[0] = 1 AND tags['list'][2] = 3 AND NOT IS_DEFINED(tags.list[3])`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE properties.reported['telemetryConfig'].status = 'Error'`, ids: []string{"dev6"}},
	// Keywords are case-insensitive, and so are the twin's own field names.
	{q: `select * from DEVICES where TAGS.location.region = 'EU' and Properties.Reported.temperature > 0`, ids: []string{"dev4"}},
	// ... but names inside tags and properties are not.
	{q: `SELECT * FROM devices WHERE tags.Location.region = 'EU'`, ids: []string{}},
	{q: `SELECT * FROM devices WHERE true`, ids: []string{"myDeviceId", "dev2", "dev3", "dev4", "dev5", "dev6", "AZ3166Device", "dev8", "dev9", "dev10"}},
	{q: `SELECT * FROM devices WHERE 'true'`, ids: []string{}},
	{q: `SELECT * FROM devices WHERE undefined = undefined OR properties.reported.temperature = undefined`, ids: []string{}},
	{q: `SELECT * FROM devices WHERE status`, ids: []string{}},

	// TOP.
	{q: `SELECT TOP 3 * FROM devices WHERE status = 'enabled'`, ids: []string{"myDeviceId", "dev2", "dev4"}},
	{q: `SELECT TOP 0 * FROM devices`, ids: []string{}},
	{q: `SELECT TOP 100 * FROM devices WHERE status = 'disabled'`, ids: []string{"dev3", "dev9"}},
	{q: `SELECT TOP 2 deviceId FROM devices`, raw: `[{"deviceId":"myDeviceId"},{"deviceId":"dev2"}]`},
	{q: `SELECT TOP 1 status, COUNT() AS n FROM devices GROUP BY status`, raw: `[{"status":"enabled","n":8}]`},

	// Projections.
	{q: `SELECT deviceId, properties.reported.temperature AS temp FROM devices WHERE tags.location.region = 'EU'`,
		raw: `[{"deviceId":"dev4","temp":30},{"deviceId":"dev5","temp":"hot"}]`},
	{q: `SELECT properties.reported.temperature FROM devices WHERE deviceId = 'dev2'`, raw: `[{"temperature":25}]`},
	{q: `SELECT tags.location FROM devices WHERE deviceId = 'dev4'`, raw: `[{"location":{"region":"EU","plant":"Dublin1"}}]`},
	{q: `SELECT deviceId, properties.reported.connectivity AS c FROM devices WHERE deviceId IN ['dev5', 'dev8']`,
		raw: `[{"deviceId":"dev5"},{"deviceId":"dev8","c":null}]`},
	{q: `SELECT deviceId, LENGTH(deviceId), properties.reported.temperature * 2 AS t2, tags['some key'], tags.list[1] FROM devices WHERE deviceId = 'dev8' OR deviceId = 'dev2'`,
		raw: `[{"deviceId":"dev2","$1":4,"t2":50},{"deviceId":"dev8","$1":4,"some key":"v","$2":2}]`},
	{q: `SELECT 'x' AS k, [1, deviceId] AS a FROM devices WHERE deviceId = 'dev2'`, raw: `[{"k":"x","a":[1,"dev2"]}]`},
	{q: `SELECT devices FROM devices WHERE deviceId = 'nothing'`, raw: `[]`},

	// Aggregates.
	{q: `SELECT COUNT() AS n FROM devices WHERE status = 'gone'`, raw: `[{"n":0}]`},
	{q: `SELECT COUNT() AS n, SUM(properties.reported.temperature) AS s, AVG(properties.reported.temperature) AS a FROM devices WHERE status = 'gone'`,
		raw: `[{"n":0,"s":0}]`},
	{q: `SELECT COUNT() AS n, MIN(deviceId) AS lo, MAX(deviceId) AS hi FROM devices`, raw: `[{"n":10,"lo":"AZ3166Device","hi":"myDeviceId"}]`},
	{q: `SELECT tags.location.region AS region, AVG(properties.reported.temperature) AS avgTemp, MIN(properties.reported.temperature) AS minTemp,
			MAX(properties.reported.temperature) AS maxTemp, SUM(properties.reported.temperature) AS total, COUNT() AS n
		FROM devices GROUP BY tags.location.region`,
		raw: `[{"region":"US","avgTemp":25.5,"minTemp":19,"maxTemp":40,"total":127.5,"n":5},
			{"region":"EU","avgTemp":30,"minTemp":30,"maxTemp":"hot","total":30,"n":2},
			{"total":0,"n":2},
			{"region":"us","avgTemp":-5,"minTemp":-5,"maxTemp":-5,"total":-5,"n":1}]`},
	{q: `SELECT tags.location.region AS region, status, COUNT() AS n FROM devices WHERE is_defined(tags.location.region) GROUP BY tags.location.region, status`,
		raw: `[{"region":"US","status":"enabled","n":4},{"region":"US","status":"disabled","n":1},
			{"region":"EU","status":"enabled","n":2},{"region":"us","status":"disabled","n":1}]`},
	{q: `SELECT properties.reported.telemetryConfig.sendFrequencyInSecs AS f, COUNT() AS n FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs >= 60 GROUP BY properties.reported.telemetryConfig.sendFrequencyInSecs`,
		raw: `[{"f":300,"n":2},{"f":60,"n":2},{"f":120,"n":1},{"f":600,"n":1}]`},
	{q: `SELECT COUNT() AS n FROM devices.modules GROUP BY deviceId`, raw: `[{"n":3},{"n":1},{"n":2}]`},
	{q: `SELECT LOWER(tags.location.region) AS r, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location) GROUP BY LOWER(tags.location.region)`,
		raw: `[{"r":"us","n":6},{"r":"eu","n":2}]`},
	{q: `SELECT properties.reported.connectivity AS c, COUNT() AS n FROM devices GROUP BY properties.reported.connectivity`,
		raw: `[{"c":"cellular","n":3},{"c":"wifi","n":2},{"c":"wired","n":1},{"n":2},{"c":{"type":"cellular"},"n":1},{"c":null,"n":1}]`},

	// Functions.
	{q: `SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'dev1')`, ids: []string{"dev10"}},
	{q: `SELECT * FROM devices WHERE startswith(deviceId, 'my')`, ids: []string{"myDeviceId"}},
	{q: `SELECT * FROM devices WHERE ENDS_WITH(deviceId, 'Device') OR ENDSWITH(deviceId, '9')`, ids: []string{"AZ3166Device", "dev9"}},
	{q: `SELECT * FROM devices WHERE CONTAINS(LOWER(deviceId), 'device')`, ids: []string{"myDeviceId", "AZ3166Device"}},
	{q: `SELECT * FROM devices WHERE LENGTH(deviceId) = 4 AND status = 'enabled'`, ids: []string{"dev2", "dev4", "dev5", "dev6", "dev8"}},
	{q: `SELECT * FROM devices WHERE UPPER(tags.location.region) = 'US' AND status = 'disabled'`, ids: []string{"dev3", "dev9"}},
	{q: `SELECT * FROM devices WHERE SUBSTRING(deviceId, 0, 3) = 'dev' AND SUBSTRING(deviceId, 3) = '10'`, ids: []string{"dev10"}},
	{q: `SELECT * FROM devices WHERE INDEX_OF(deviceId, 'Device') = 2`, ids: []string{"myDeviceId"}},
	{q: `SELECT * FROM devices WHERE INDEX_OF(deviceId, 'x') = -1 AND status = 'disabled'`, ids: []string{"dev3", "dev9"}},
	{q: `SELECT * FROM devices WHERE CONCAT(deviceId, '-', status) = 'dev3-disabled'`, ids: []string{"dev3"}},
	{q: `SELECT * FROM devices WHERE ARRAY_CONTAINS(tags.list, 2)`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE ARRAY_CONTAINS(['wifi', 'wired'], properties.reported.connectivity)`, ids: []string{"dev2", "dev3", "dev9"}},
	{q: `SELECT * FROM devices WHERE IS_NULL(properties.reported.connectivity)`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE IS_OBJECT(properties.reported.connectivity)`, ids: []string{"AZ3166Device"}},
	{q: `SELECT * FROM devices WHERE IS_STRING(properties.reported.temperature)`, ids: []string{"dev5"}},
	{q: `SELECT * FROM devices WHERE IS_NUMBER(properties.reported.temperature) AND properties.reported.temperature > 24`, ids: []string{"dev2", "dev4", "dev10"}},
	{q: `SELECT * FROM devices WHERE IS_BOOL(capabilities.iotEdge) AND capabilities.iotEdge`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE IS_PRIMITIVE(properties.reported.connectivity) AND NOT IS_STRING(properties.reported.connectivity)`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE IS_ARRAY(tags.list)`, ids: []string{"dev8"}},
	{q: `SELECT * FROM devices WHERE AS_NUMBER(tags.floor) > 2`, ids: []string{"dev4", "dev8"}},
	{q: `SELECT * FROM devices WHERE ABS(properties.reported.temperature) = 5`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE CEILING(properties.reported.temperature) = 22 AND FLOOR(properties.reported.temperature) = 21`, ids: []string{"myDeviceId"}},
	{q: `SELECT * FROM devices WHERE SIGN(properties.reported.temperature) = -1`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE SQRT(properties.reported.temperature) = 5`, ids: []string{"dev2"}},
	{q: `SELECT * FROM devices WHERE SQUARE(properties.reported.temperature) = 25`, ids: []string{"dev9"}},
	{q: `SELECT * FROM devices WHERE POWER(properties.reported.temperature, 2) = 1600`, ids: []string{"dev10"}},
	{q: `SELECT * FROM devices WHERE EXP(properties.reported.temperature) > 1e17 AND EXP(0) = 1`, ids: []string{"dev10"}},
	{q: `SELECT deviceId, UPPER(SUBSTRING(deviceId, 2, 6)) AS mid FROM devices WHERE deviceId = 'myDeviceId'`, raw: `[{"deviceId":"myDeviceId","mid":"DEVICE"}]`},
}

func TestConformance(t *testing.T) {
	for _, c := range conformance {
		q, err := Parse(c.q)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.q, err)
			continue
		}
		fleet := deviceFleet
		switch q.Collection {
		case DevicesModules:
			fleet = moduleFleet
		case DevicesJobs:
			fleet = jobFleet
		}
		got, err := q.Execute(seq(fleet))
		if err != nil {
			t.Errorf("Execute(%q): %v", c.q, err)
			continue
		}
		if c.item != "" && q.ItemType() != c.item {
			t.Errorf("%q: item type %s, want %s", c.q, q.ItemType(), c.item)
		}
		if c.ids != nil {
			if !q.Star || q.IsRaw() {
				t.Errorf("%q: want a SELECT * query", c.q)
			}
			ids := []string{}
			for _, d := range got {
				ids = append(ids, docID(d))
			}
			if !reflect.DeepEqual(ids, c.ids) {
				t.Errorf("%q:\n got %q\nwant %q", c.q, ids, c.ids)
			}
			// Match agrees with Execute for plain SELECT * queries.
			if q.GroupBy == nil && q.Top < 0 {
				var m []string
				for _, d := range fleet {
					if q.Match(d) {
						m = append(m, docID(d))
					}
				}
				if len(m) != len(ids) {
					t.Errorf("%q: Match selects %q", c.q, m)
				}
			}
			continue
		}
		if !q.IsRaw() {
			t.Errorf("%q: want a raw query", c.q)
		}
		var want any
		if err := json.Unmarshal([]byte(c.raw), &want); err != nil {
			t.Fatalf("%q: bad expectation: %v", c.q, err)
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Errorf("%q: marshal result: %v", c.q, err)
			continue
		}
		var gotAny any
		_ = json.Unmarshal(b, &gotAny)
		if !reflect.DeepEqual(gotAny, want) {
			t.Errorf("%q:\n got %s\nwant %s", c.q, b, strings.Join(strings.Fields(c.raw), ""))
		}
	}
}

// parseErrors lists bad queries with where the error is and part of its message.
var parseErrors = []struct {
	q         string
	line, col int
	msg       string
}{
	{``, 1, 1, "expected SELECT"},
	{`   `, 1, 4, "expected SELECT"},
	{`SELECT`, 1, 7, "expected an expression"},
	{`SELECT * devices`, 1, 10, "expected FROM"},
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
	{`SELECT * FROM devices WHERE x = '` + strings.Repeat("a", MaxLength) + `'`, 1, MaxLength + 1, "longer than 8192 characters"},
}

func TestParseErrors(t *testing.T) {
	for _, c := range parseErrors {
		q, err := Parse(c.q)
		if err == nil {
			t.Errorf("Parse(%.60q) = %+v, want an error", c.q, q)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%.60q): error %T, want *Error", c.q, err)
			continue
		}
		if e.Line != c.line || e.Column != c.col || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("Parse(%.60q):\n got %v\nwant line %d, column %d: ...%s...", c.q, err, c.line, c.col, c.msg)
		}
		if e.Offset < 0 || e.Offset > len(c.q) {
			t.Errorf("Parse(%.60q): offset %d outside the source", c.q, e.Offset)
		}
		if want := "line "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Error() = %q", err.Error())
		}
	}
}
