package twinhub

import (
	"context"
	"errors"
	"time"
)

// File upload: a device asks for a SAS URI of a blob in the hub's storage
// account, uploads the file there itself, and tells the hub when it is
// done; the hub then sends the back ends a file notification.

// FileUploadSASTTL is how long a device's SAS token for an upload lasts
// (IoT Hub's default, one hour).
const FileUploadSASTTL = time.Hour

// MaxActiveFileUploads is IoT Hub's limit on a device's uploads under
// way at once: each from its SAS URI until its notification, or until the
// SAS token expires.
const MaxActiveFileUploads = 10

// ErrTooManyUploads is what ActiveUploads.Begin returns for an upload over
// MaxActiveFileUploads (IoT Hub's 403006).
var ErrTooManyUploads = errors.New("Number of active file upload requests cannot exceed 10")

// ActiveUploads counts each device's uploads under way, for every node of
// a hub.
type ActiveUploads interface {
	// Begin counts upload id of device until expiry, unless max are under
	// way already (ErrTooManyUploads).
	Begin(ctx context.Context, device, id string, expiry time.Time, max int) error
	// End stops counting the upload (a notification came); one that is
	// not counted is left alone.
	End(ctx context.Context, device, id string) error
}

// FileUploadRequest is the body of POST /devices/{id}/files.
type FileUploadRequest struct {
	BlobName string `json:"blobName"`
}

// FileUploadSAS is IoT Hub's answer to it: where the device uploads.
type FileUploadSAS struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
}

// FileUploadResult is the body of POST /devices/{id}/files/notifications.
type FileUploadResult struct {
	CorrelationID     string `json:"correlationId"`
	IsSuccess         bool   `json:"isSuccess"`
	StatusCode        int    `json:"statusCode"`
	StatusDescription string `json:"statusDescription"`
}

// BlobInfo is what the hub reads of an uploaded blob.
type BlobInfo struct {
	URI          string
	Size         int64
	LastModified time.Time
}

// BlobStorage is the storage account devices upload files to.
type BlobStorage interface {
	// HostName and Container say where the device uploads
	// (https://{HostName}/{Container}/{blob}).
	HostName() string
	Container() string
	// UploadSAS returns a SAS token ("?sv=...") to write blob until expiry.
	UploadSAS(ctx context.Context, blob string, expiry time.Time) (string, error)
	// Blob reads an uploaded blob: ErrNotFound when there is none.
	Blob(ctx context.Context, blob string) (BlobInfo, error)
}
