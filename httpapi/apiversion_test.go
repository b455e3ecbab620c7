package httpapi

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// apiVersionPattern is the form apiVersionForm checks by hand: the
// oracle of its tests.
var apiVersionPattern = regexp.MustCompile(`^20[1-9][0-9]-[01][0-9]-[0-3][0-9](-preview)?$`)

// TestAPIVersionForm: the versions the SDKs send pass, others do not,
// as the regular expression says.
func TestAPIVersionForm(t *testing.T) {
	for _, v := range []string{
		"2021-04-12", "2020-09-30", "2016-11-14", "2019-10-01-preview", "2018-08-30-preview",
		"", "2021-04-1", "2021-04-120", "1999-01-01", "2000-01-01", "2021-4-12", "2021-24-12", "2021-04-42",
		"2021-04-12-", "2021-04-12-previe", "2021-04-12-PREVIEW", "2021/04/12", "20210412", "2021-04-12-preview-preview", "x2021-04-12",
	} {
		if got, want := apiVersionForm(v), apiVersionPattern.MatchString(v); got != want {
			t.Errorf("apiVersionForm(%q) = %v, want %v", v, got, want)
		}
	}
}

func FuzzAPIVersionForm(f *testing.F) {
	for _, v := range []string{"2021-04-12", "2019-10-01-preview", "2021-04-1x", "-preview"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := apiVersionForm(v), apiVersionPattern.MatchString(v); got != want {
			t.Errorf("apiVersionForm(%q) = %v, want %v", v, got, want)
		}
	})
}

// FuzzQueryValue: queryValue finds what url.ParseQuery and Get find, for
// any raw query (below ParseQuery's bound on the number of parameters).
func FuzzQueryValue(f *testing.F) {
	for _, q := range []string{
		"api-version=2021-04-12", "top=3&api-version=2020-09-30", "api%2Dversion=2021-04-12&api-version=x",
		"api-version=a;b&api-version=2021-04-12", "api-version=%zz&api-version=2021-04-12", "api-version", "&&api-version=%41+b", "api+version=1",
	} {
		f.Add(q, "api-version")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		if strings.Count(raw, "&") >= 1000 || strings.ContainsAny(key, "%+") {
			return // keys are names that need no escaping, as "api-version"
		}
		values, _ := url.ParseQuery(raw)
		if got, want := queryValue(raw, key), values.Get(key); got != want {
			t.Errorf("queryValue(%q, %q) = %q, want %q", raw, key, got, want)
		}
	})
}
