package sas

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	const key = "dHdpbmh1Yi10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"
	valid := []struct {
		name, in string
		want     ConnectionString
		canon    string // String(); "" means the input itself
	}{
		{"hub", "HostName=myhub.example;SharedAccessKeyName=iothubowner;SharedAccessKey=" + key,
			ConnectionString{HostName: "myhub.example", SharedAccessKeyName: "iothubowner", SharedAccessKey: key}, ""},
		{"device", "HostName=myhub.example;DeviceId=dev1;SharedAccessKey=" + key,
			ConnectionString{HostName: "myhub.example", DeviceID: "dev1", SharedAccessKey: key}, ""},
		{"module", "HostName=myhub.example;DeviceId=dev1;ModuleId=mod1;SharedAccessKey=" + key,
			ConnectionString{HostName: "myhub.example", DeviceID: "dev1", ModuleID: "mod1", SharedAccessKey: key}, ""},
		{"x509", "HostName=myhub.example;DeviceId=dev1;x509=true",
			ConnectionString{HostName: "myhub.example", DeviceID: "dev1", X509: true}, ""},
		{"gateway", "HostName=myhub.example;DeviceId=dev1;SharedAccessKey=" + key + ";GatewayHostName=edge.local",
			ConnectionString{HostName: "myhub.example", DeviceID: "dev1", SharedAccessKey: key, GatewayHostName: "edge.local"}, ""},
		{"device through a policy", "HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey=" + key,
			ConnectionString{HostName: "h", DeviceID: "d", SharedAccessKeyName: "device", SharedAccessKey: key}, ""},
		{"any order, trailing semicolon", "SharedAccessKey=" + key + ";DeviceId=dev1;HostName=myhub.example;",
			ConnectionString{HostName: "myhub.example", DeviceID: "dev1", SharedAccessKey: key},
			"HostName=myhub.example;DeviceId=dev1;SharedAccessKey=" + key},
		{"keys any case, spaces", " hostname = h ; DEVICEID=d;X509=TRUE ",
			ConnectionString{HostName: "h", DeviceID: "d", X509: true}, "HostName=h;DeviceId=d;x509=true"},
		{"x509=false with a key", "HostName=h;DeviceId=d;SharedAccessKey=" + key + ";x509=false",
			ConnectionString{HostName: "h", DeviceID: "d", SharedAccessKey: key}, "HostName=h;DeviceId=d;SharedAccessKey=" + key},
		{"id with =", "HostName=h;DeviceId=a=b;SharedAccessKey=AAAA",
			ConnectionString{HostName: "h", DeviceID: "a=b", SharedAccessKey: "AAAA"}, ""},
	}
	for _, c := range valid {
		got, err := ParseConnectionString(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
		canon := c.canon
		if canon == "" {
			canon = c.in
		}
		if s := got.String(); s != canon {
			t.Errorf("%s: String() = %q, want %q", c.name, s, canon)
		}
		if again, err := ParseConnectionString(got.String()); err != nil || again != got {
			t.Errorf("%s: String() does not round-trip: %+v %v", c.name, again, err)
		}
	}

	invalid := []struct {
		name, in, msg string
		want          error
	}{
		{"empty", "", "lacks HostName", ErrMalformed},
		{"missing HostName", "DeviceId=d;SharedAccessKey=" + key, "lacks HostName", ErrMalformed},
		{"missing key", "HostName=h;DeviceId=d", "lacks SharedAccessKey", ErrMalformed},
		{"policy without key", "HostName=h;SharedAccessKeyName=p", "lacks SharedAccessKey", ErrMalformed},
		{"no identity", "HostName=h;SharedAccessKey=" + key, "neither DeviceId nor SharedAccessKeyName", ErrMalformed},
		{"module without device", "HostName=h;ModuleId=m;SharedAccessKeyName=p;SharedAccessKey=" + key, "ModuleId but no DeviceId", ErrMalformed},
		{"x509 without device", "HostName=h;x509=true", "x509=true but no DeviceId", ErrMalformed},
		{"x509 with key", "HostName=h;DeviceId=d;SharedAccessKey=" + key + ";x509=true", "both", ErrMalformed},
		{"x509 bad value", "HostName=h;DeviceId=d;x509=yes", "true or false", ErrMalformed},
		{"unknown key", "HostName=h;DeviceId=d;SharedAccessKey=" + key + ";Foo=bar", `unknown connection string key "Foo"`, ErrMalformed},
		{"SharedAccessSignature unsupported", "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h", "unknown", ErrMalformed},
		{"duplicate key", "HostName=h;HostName=h;DeviceId=d;SharedAccessKey=" + key, "HostName twice", ErrMalformed},
		{"duplicate key other case", "HostName=h;DeviceId=d;deviceid=e;SharedAccessKey=" + key, "DeviceId twice", ErrMalformed},
		{"no equals", "HostName=h;DeviceId;SharedAccessKey=" + key, "not Key=value", ErrMalformed},
		{"empty key name", "HostName=h;=d;SharedAccessKey=" + key, "not Key=value", ErrMalformed},
		{"empty value", "HostName=h;DeviceId=;SharedAccessKey=" + key, "empty DeviceId", ErrMalformed},
		{"key not base64", "HostName=h;DeviceId=d;SharedAccessKey=S3cr3t!!", "not valid base64", ErrBadKey},
	}
	for _, c := range invalid {
		_, err := ParseConnectionString(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.msg)
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "S3cr3t") {
			t.Errorf("%s: error leaks the key: %v", c.name, err)
		}
	}
}

func TestConnectionStringString(t *testing.T) {
	cases := []struct {
		c    ConnectionString
		want string
	}{
		{ConnectionString{}, ""},
		{ConnectionString{X509: true}, "x509=true"},
		{ConnectionString{GatewayHostName: "g", X509: true, DeviceID: "d", HostName: "h", ModuleID: "m"}, "HostName=h;DeviceId=d;ModuleId=m;GatewayHostName=g;x509=true"},
		{ConnectionString{SharedAccessKey: "k", SharedAccessKeyName: "n", HostName: "h"}, "HostName=h;SharedAccessKeyName=n;SharedAccessKey=k"},
		{ConnectionString{HostName: "h", DeviceID: "d", ModuleID: "m", SharedAccessKeyName: "n", SharedAccessKey: "k", GatewayHostName: "g", X509: true},
			"HostName=h;DeviceId=d;ModuleId=m;SharedAccessKeyName=n;SharedAccessKey=k;GatewayHostName=g;x509=true"},
	}
	for _, c := range cases {
		if got := c.c.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.c, got, c.want)
		}
	}
}
