package twinhub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is a failure the hub reports to a client. Status and Code are the
// HTTP status and the IoT Hub error code (for example 404 and
// "DeviceNotFound"): the Azure SDKs choose their error classes from both,
// so every failure a client can see carries them.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// errorNumbers are IoT Hub's numeric forms of the error codes twinhub
// uses. They appear where IoT Hub writes numbers: bulk registry results
// and the errorCode of MQTT twin replies.
var errorNumbers = map[string]int{
	"InvalidProtocolVersion":                     400001,
	"ArgumentInvalid":                            400004,
	"ArgumentNull":                               400005,
	"IotHubFormatError":                          400006,
	"IotHubUnauthorizedAccess":                   401002,
	"IotHubUnauthorized":                         401003,
	"IotHubQuotaExceeded":                        403002,
	"DeviceModelMaxPropertiesExceeded":           403100,
	"DeviceMaximumQueueDepthExceeded":            403004,
	"DeviceMaximumActiveFileUploadLimitExceeded": 403006,
	"NotFound":                                   404000,
	"DeviceNotFound":                             404001,
	"ModuleNotFound":                             404010,
	"DeviceNotOnline":                            404103,
	"DeviceAlreadyExists":                        409001,
	"ModuleAlreadyExistsOnDevice":                409301,
	"PreconditionFailed":                         412001,
	"MessageTooLarge":                            413001,
	"ThrottlingException":                        429001,
	"ServerError":                                500001,
	"ServiceUnavailable":                         503001,
	"GatewayTimeout":                             504101,
}

// Number is the numeric IoT Hub error code, such as 404001 for
// DeviceNotFound; codes without a number of their own get the status
// followed by 001.
func (e *Error) Number() int {
	if n, ok := errorNumbers[e.Code]; ok {
		return n
	}
	return e.Status*1000 + 1
}

// TwinAnswerJSON is IoT Hub's error body in the answer to a device's twin
// request (MQTT's $iothub/twin/res, AMQP's twin channel): the Node SDK
// sees an error only through a truthy errorCode, and shows message.
// trackingID names the connection that answers.
func (e *Error) TwinAnswerJSON(trackingID string) []byte {
	body, _ := json.Marshal(struct {
		ErrorCode    int    `json:"errorCode"`
		Message      string `json:"message"`
		TrackingID   string `json:"trackingId"`
		TimestampUTC string `json:"timestampUtc"`
	}{e.Number(), e.Message, trackingID, Now().String()})
	return body
}

// Errorf builds an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error: itself if it is one, the IoT Hub
// error of a store-level condition (sentinels) if it is one of those, and
// otherwise a 500 ServerError, so that internal details never reach a
// client.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return &Error{Status: s.status, Code: s.code, Message: err.Error()}
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "ServerError", Message: "internal server error"}
}

// Store-level conditions. The hub answers most of them with a more
// precise *Error (ErrIdentityNotFound for a missing device, say); one
// that reaches a client as it is gets its entry of sentinels.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("revision conflict")
)

// sentinels are the IoT Hub errors of the store-level conditions: a
// client's request caused them, so none is a 500 (TestSentinels holds
// every sentinel of the package to having one).
var sentinels = []struct {
	err    error
	status int
	code   string
}{
	{ErrNotFound, http.StatusNotFound, "NotFound"},
	{ErrExists, http.StatusConflict, "DeviceAlreadyExists"},
	{ErrConflict, http.StatusPreconditionFailed, "PreconditionFailed"},
	{ErrQueueFull, http.StatusForbidden, "DeviceMaximumQueueDepthExceeded"},
	{ErrTooManyUploads, http.StatusForbidden, "DeviceMaximumActiveFileUploadLimitExceeded"},
}

// StoreUnavailable is the error of a store that cannot take or answer a
// request now: it timed out, or a cluster has no quorum of its nodes to
// replicate a write. Clients get 503 ServiceUnavailable, which the SDKs
// retry; nothing was acknowledged. The cause stays in the error for the
// log, not in what the client sees (AsError finds the *Error).
func StoreUnavailable(cause error) error {
	return fmt.Errorf("%w (%v)", &Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable",
		Message: "the hub's store cannot take the request now (a cluster without a quorum of its nodes?); try again"}, cause)
}

func errDeviceNotFound(id string) *Error {
	return Errorf(http.StatusNotFound, "DeviceNotFound", "Device %s not registered", id)
}

func errModuleNotFound(id, mid string) *Error {
	return Errorf(http.StatusNotFound, "ModuleNotFound", "Module %s on device %s not registered", mid, id)
}

// ErrIdentityNotFound is the 404 for a device or module that is not
// registered, with IoT Hub's code for each.
func ErrIdentityNotFound(k Key) *Error {
	if k.ModuleID != "" {
		return errModuleNotFound(k.DeviceID, k.ModuleID)
	}
	return errDeviceNotFound(k.DeviceID)
}

// ErrPreconditionFailed is the 412 for an If-Match etag that is not
// the current one of what.
func ErrPreconditionFailed(what string) *Error {
	return Errorf(http.StatusPreconditionFailed, "PreconditionFailed", "Precondition failed: %s etag does not match", what)
}

// ErrInvalid is a 400 for a request whose content breaks a rule.
func ErrInvalid(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "ArgumentInvalid", format, args...)
}

// ErrTooLarge is a 413 for a document over a size limit.
func ErrTooLarge(format string, args ...any) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, "MessageTooLarge", format, args...)
}

// ErrThrottled is the answer to an operation over the hub's rate of what
// (a throttle class: "twin updates"): 429 ThrottlingException, which the
// SDKs retry after a while.
func ErrThrottled(what fmt.Stringer) *Error {
	return Errorf(http.StatusTooManyRequests, "ThrottlingException", "the hub's rate of %s is exceeded; retry later", what)
}
