package query

import "testing"

// TestEval evaluates single expressions against dev8 of the fleet (tags
// {"some key":"v","list":[1,2,3],"floor":16}, reported connectivity null)
// and compares the results in JSON form ("undefined" when undefined).
func TestEval(t *testing.T) {
	doc := deviceFleet[7]
	for _, c := range []struct{ expr, want string }{
		{`tags.list`, `[1,2,3]`},
		{`tags.list[1]`, `2`},
		{`tags.list[3]`, `undefined`},
		{`tags.list.x`, `undefined`},
		{`tags['some key'][0]`, `undefined`},
		{`deviceId[0]`, `undefined`},
		{`devices.tags.floor`, `16`},
		{`devices`, `undefined`}, // the whole document: an object, shown below
		{`IS_OBJECT(devices)`, `true`},
		{`2 IN tags.list`, `true`},
		{`5 IN tags.list`, `false`},
		{`5 NIN tags.list`, `true`},
		{`5 IN deviceId`, `undefined`},
		{`tags IN [1]`, `undefined`},
		{`tags.nothing NIN [1]`, `undefined`},
		{`tags.floor IN [1,2,3,4,5,6,7,8,16.0]`, `true`},
		{`tags.floor IN ['1','2','3','4','5','6','7','8','9',true]`, `false`},
		{`true IN ['1','2','3','4','5','6','7','8','9',true]`, `true`},
		{`[tags.floor, tags.nothing, 'x']`, `[16,"x"]`},
		{`ARRAY_CONTAINS(tags.list, 3)`, `true`},
		{`ARRAY_CONTAINS(tags.list, '3')`, `false`},
		{`ARRAY_CONTAINS(tags.list, tags.nothing)`, `undefined`},
		{`ARRAY_CONTAINS([tags, 1], tags)`, `true`},
		{`ARRAY_CONTAINS([[1, 2], 1], tags.list)`, `false`},
		{`ARRAY_CONTAINS([[1, 2, 3]], tags.list)`, `true`},
		{`ARRAY_CONTAINS([capabilities], capabilities)`, `true`},
		{`ARRAY_CONTAINS([properties.reported], properties.reported)`, `true`},
		{`ARRAY_CONTAINS([properties.reported], capabilities, true)`, `false`},
		{`ARRAY_CONTAINS([tags, 2], x509Thumbprint, true)`, `false`},
		{`ARRAY_CONTAINS([x509Thumbprint], x509Thumbprint, true)`, `true`},
		{`ARRAY_CONTAINS([1, 2], 2, true)`, `true`},
		{`ARRAY_CONTAINS('x', 2)`, `undefined`},
		{`CONCAT('a', 'b', 'c')`, `"abc"`},
		{`CONCAT('a', 1)`, `undefined`},
		{`LENGTH('héllo')`, `5`},
		{`LENGTH(1)`, `undefined`},
		{`SUBSTRING('héllo', 1, 3)`, `"éll"`},
		{`SUBSTRING('héllo', -2, 2)`, `"hé"`},
		{`SUBSTRING('héllo', 9)`, `""`},
		{`SUBSTRING('héllo', 1, 0)`, `""`},
		{`SUBSTRING('héllo', 1, 1e12)`, `"éllo"`},
		{`SUBSTRING('héllo', '1')`, `undefined`},
		{`INDEX_OF('héllo', 'l')`, `2`},
		{`INDEX_OF(1, 'l')`, `undefined`},
		{`STARTS_WITH(1, 'l')`, `undefined`},
		{`LOWER('ÀB')`, `"àb"`},
		{`UPPER(tags)`, `undefined`},
		{`AS_NUMBER(' 12.5 ')`, `12.5`},
		{`AS_NUMBER('1e3')`, `1000`},
		{`AS_NUMBER('Inf')`, `undefined`},
		{`AS_NUMBER('0x10')`, `undefined`},
		{`AS_NUMBER('abc')`, `undefined`},
		{`AS_NUMBER(true)`, `undefined`},
		{`IS_DEFINED(undefined)`, `false`},
		{`IS_DEFINED(null)`, `true`},
		{`IS_NULL(properties.reported.connectivity)`, `true`},
		{`IS_NULL(tags.nothing)`, `false`},
		{`IS_PRIMITIVE(tags.list)`, `false`},
		{`IS_BOOLEAN(true)`, `true`},
		{`SQRT(-1)`, `undefined`},
		{`EXP(1000)`, `undefined`},
		{`POWER(2, 10)`, `1024`},
		{`POWER('2', 10)`, `undefined`},
		{`SIGN(0)`, `0`},
		{`ABS('x')`, `undefined`},
		{`-tags.floor`, `-16`},
		{`-deviceId`, `undefined`},
		{`NOT deviceId`, `undefined`},
		{`NOT (deviceId = 'dev8')`, `false`},
		{`7 % 4`, `3`},
		{`7 % 0`, `undefined`},
		{`1 / 0`, `undefined`},
		{`'a' + 'b'`, `undefined`},
		{`tags.floor + 1 = 17`, `true`},
		{`null = null`, `true`},
		{`null < null`, `undefined`},
		{`false < true`, `true`},
		{`true >= true`, `true`},
		{`'a' < 1`, `undefined`},
		{`'b' > 'a' AND 'B' < 'a'`, `true`},
		{`tags = tags`, `undefined`},
		{`tags != 1`, `undefined`},
		{`1 = '1'`, `false`},
		{`1 != '1'`, `true`},
		{`tags.nothing != 1`, `undefined`},
		{`1 != tags.nothing`, `undefined`},
		{`false AND tags.nothing`, `false`},
		{`tags.nothing AND false`, `false`},
		{`tags.nothing AND true`, `undefined`},
		{`true OR tags.nothing`, `true`},
		{`tags.nothing OR true`, `true`},
		{`tags.nothing OR false`, `undefined`},
		{`false OR false`, `false`},
		{`"a\/b\n\t\r\b\f\\"`, `"a/b\n\t\r\b\f\\"`},
		{`'\ud83d\ude00' = '😀'`, `true`},
		{`'\u00e9'`, `"é"`},
	} {
		q, err := Parse("SELECT * FROM devices WHERE " + c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		v := q.Where.Eval(Map(doc))
		got := v.String()
		if c.expr == "devices" {
			if v.Kind != Object || len(v.Object()) != len(doc) {
				t.Errorf("devices: got %v", v.Kind)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s = %s, want %s", c.expr, got, c.want)
		}
	}
}
