package twinhub

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// Automatic device and module configurations: content for the desired
// properties of every twin a target condition matches, the configuration
// of highest priority winning where several target one twin.

// MaxConfigurations and MaxConfigurationMetrics are IoT Hub's limits (a
// standard hub's).
const (
	MaxConfigurations       = 100
	MaxConfigurationMetrics = 5
	maxConfigurationID      = 128
)

// ConfigurationContent is what a configuration writes: deviceContent into
// device twins, moduleContent into module twins, modulesContent (an IoT
// Edge deployment) into the module twins of an edge device. Keys are
// "properties.desired" or paths below it.
type ConfigurationContent struct {
	DeviceContent  map[string]any            `json:"deviceContent,omitempty"`
	ModulesContent map[string]map[string]any `json:"modulesContent,omitempty"`
	ModuleContent  map[string]any            `json:"moduleContent,omitempty"`
}

// ConfigurationMetrics are named queries and, from the hub, their counts.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// Configuration is a configuration as /configurations/{id} shows it.
type Configuration struct {
	ID                 string               `json:"id"`
	SchemaVersion      string               `json:"schemaVersion"`
	Labels             map[string]string    `json:"labels"`
	Content            ConfigurationContent `json:"content"`
	TargetCondition    string               `json:"targetCondition"`
	CreatedTimeUtc     Time                 `json:"createdTimeUtc"`
	LastUpdatedTimeUtc Time                 `json:"lastUpdatedTimeUtc"`
	Priority           int                  `json:"priority"`
	SystemMetrics      ConfigurationMetrics `json:"systemMetrics"`
	Metrics            ConfigurationMetrics `json:"metrics"`
	ETag               string               `json:"etag"`
	// Version counts the configuration's changes; its etag comes from it.
	// Not shown.
	Version int64 `json:"-"`
}

// ForModules says whether the configuration targets module twins.
func (c *Configuration) ForModules() bool { return len(c.Content.ModuleContent) > 0 }

// ConfigurationStore keeps configurations.
type ConfigurationStore interface {
	// CreateConfiguration stores a new one: ErrExists when the id is taken.
	CreateConfiguration(ctx context.Context, c *Configuration) error
	// Configuration reads one and its revision: ErrNotFound if none.
	Configuration(ctx context.Context, id string) (*Configuration, uint64, error)
	// UpdateConfiguration replaces one if its revision is still rev
	// (ErrConflict otherwise).
	UpdateConfiguration(ctx context.Context, c *Configuration, rev uint64) error
	// DeleteConfiguration removes one if its revision is still rev (0:
	// whatever it is): ErrNotFound if none, ErrConflict if changed.
	DeleteConfiguration(ctx context.Context, id string, rev uint64) error
	// Configurations returns them all, oldest first.
	Configurations(ctx context.Context) ([]*Configuration, error)
}

// ConfigurationETag turns a configuration's version into its etag.
func ConfigurationETag(version int64) string { return IdentityETag(version) }

// ErrConfigurationNotFound is the 404 of an unknown configuration.
func ErrConfigurationNotFound(id string) *Error {
	return Errorf(http.StatusNotFound, "ConfigurationNotFound", "Configuration '%s' not found", id)
}

// ValidateConfigurationID checks an id as IoT Hub does: 1 to 128
// lowercase letters, digits and - + % _ * ! ' (no spaces, no capitals).
func ValidateConfigurationID(id string) error {
	if id == "" || len(id) > maxConfigurationID {
		return ErrInvalid("a configuration id has 1 to %d characters, not %d", maxConfigurationID, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-+%_*!'", c) >= 0 {
			continue
		}
		return ErrInvalid("configuration id %q has the character %q at position %d: ids hold lowercase letters, digits and - + %% _ * ! ' only", id, c, i)
	}
	return nil
}

// DesiredPatch turns a content section ("properties.desired" keys or
// paths below it) into the desired-properties patch it makes.
func DesiredPatch(section map[string]any) (map[string]any, error) {
	patch := map[string]any{}
	for key, v := range section {
		rest, ok := strings.CutPrefix(key, "properties.desired")
		if !ok || (rest != "" && !strings.HasPrefix(rest, ".")) {
			return nil, Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content key %q: keys are properties.desired or a path below it", key)
		}
		if rest == "" {
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content properties.desired must be a JSON object")
			}
			mergeInto(patch, obj)
			continue
		}
		names := strings.Split(rest[1:], ".")
		node := patch
		for i, name := range names {
			if name == "" {
				return nil, Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content key %q has an empty name", key)
			}
			if i == len(names)-1 {
				node[name] = v
				break
			}
			next, ok := node[name].(map[string]any)
			if !ok {
				next = map[string]any{}
				node[name] = next
			}
			node = next
		}
	}
	// The patch passes the checks of a twin PATCH, and holds the values
	// a twin holds (ParsePatch).
	data, err := json.Marshal(patch)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content: %v", err)
	}
	checked, err := ParsePatch("properties.desired", data)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "InvalidConfigurationContent", "content: %s", AsError(err).Message)
	}
	return checked, nil
}

// mergeInto merges src into dst, objects member by member.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				mergeInto(d, sub)
				continue
			}
			c := map[string]any{}
			mergeInto(c, sub)
			dst[k] = c
			continue
		}
		dst[k] = v
	}
}
