package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// The settings of `twinhub serve` come from its flags, the environment
// (TWINHUB_ and the flag's name in capitals, - as _: TWINHUB_HTTPS_ADDR),
// and a YAML file (--config, keys the flags' names: https-addr: ":443"),
// in that order of precedence, read with koanf. A key of the file that
// names no setting, or a value a setting refuses, stops the start with the
// file, key and reason; environment variables that name no setting are
// left alone (TWINHUB_DATA and others belong to other commands).

// envPrefix is the prefix of the environment's settings.
const envPrefix = "TWINHUB_"

// notInFile are flags a file does not set.
var notInFile = []string{"config", "help", "table"}

// applyConfig sets the flags of fl that the command line left unset from
// the environment, then from the file at path ("" for none).
func applyConfig(fl *pflag.FlagSet, path string) error {
	fromFile := koanf.New("\x00") // keys are flag names: no nesting
	if path != "" {
		if err := fromFile.Load(file.Provider(path), yaml.Parser()); err != nil {
			return fmt.Errorf("--config %s: %w", path, err)
		}
		for _, key := range fromFile.Keys() {
			if f := fl.Lookup(key); f == nil || slices.Contains(notInFile, key) {
				return fmt.Errorf("--config %s: %q is not a setting of twinhub serve (its flags' names are the keys; see twinhub serve --help)", path, key)
			}
		}
	}
	fromEnv := koanf.New("\x00")
	err := fromEnv.Load(env.Provider("\x00", env.Opt{Prefix: envPrefix, TransformFunc: func(k, v string) (string, any) {
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, envPrefix)), "_", "-")
		if fl.Lookup(name) == nil || slices.Contains(notInFile, name) {
			return "", nil // another command's, or no setting
		}
		return name, v
	}}), nil)
	if err != nil {
		return err
	}
	var firstErr error
	fl.VisitAll(func(f *pflag.Flag) {
		if firstErr != nil || f.Changed || slices.Contains(notInFile, f.Name) {
			return
		}
		source, value, ok := "", any(nil), false
		if v, found := fromEnv.Raw()[f.Name]; found {
			source, value, ok = "environment variable "+envPrefix+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), v, true
		} else if v, found := fromFile.Raw()[f.Name]; found {
			source, value, ok = fmt.Sprintf("--config %s: key %q", path, f.Name), v, true
		}
		if !ok {
			return
		}
		if err := fl.Set(f.Name, configString(value)); err != nil {
			firstErr = fmt.Errorf("%s: %v", source, err)
		}
	})
	return firstErr
}

// configString is a setting's value as its flag takes it: lists joined
// with commas, everything else as printed.
func configString(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}
