package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/twinhub/twinhub"
)

// File upload (POST /devices/{id}/files and .../files/notifications).
//
// The correlation id a device gets names the blob and when the upload's
// SAS token expires, signed with a key of the hub's (derivedKey): a
// notification is checked against it on any node. What is kept in between
// is the count of a device's uploads under way (ActiveUploads), for IoT
// Hub's limit of 10.

// maxBlobName is Azure Storage's limit on a blob name.
const maxBlobName = 1024

const uploadMAC = 16

func errNoFileUpload() error {
	return twinhub.Errorf(http.StatusBadRequest, "ArgumentInvalid", "file upload is not configured on this hub (twinhub serve --file-upload-storage and --file-upload-container)")
}

// RequestFileUpload gives device id a SAS URI to upload blobName to: the
// blob is {id}/{blobName} in the hub's container, as IoT Hub names it.
func (h *Hub) RequestFileUpload(ctx context.Context, id string, req twinhub.FileUploadRequest) (*twinhub.FileUploadSAS, error) {
	if h.blobs == nil {
		return nil, errNoFileUpload()
	}
	name := strings.TrimLeft(req.BlobName, "/")
	if name == "" {
		return nil, twinhub.ErrInvalid("blobName is empty")
	}
	blob := id + "/" + name
	if len(blob) > maxBlobName {
		return nil, twinhub.ErrInvalid("blob name %q is longer than %d characters with the device id before it", name, maxBlobName)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return nil, twinhub.ErrInvalid("blob name %q has an empty, . or .. segment", name)
		}
	}
	expiry := time.Now().Add(twinhub.FileUploadSASTTL)
	token, err := h.blobs.UploadSAS(ctx, blob, expiry)
	if err != nil {
		return nil, twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the file upload storage account: %v", err)
	}
	correlation := h.uploadCorrelation(blob, expiry)
	if h.uploads != nil {
		if err := h.uploads.Begin(ctx, id, correlation, expiry, twinhub.MaxActiveFileUploads); err != nil {
			return nil, twinhub.AsError(err)
		}
	}
	return &twinhub.FileUploadSAS{
		CorrelationID: correlation,
		HostName:      h.blobs.HostName(),
		ContainerName: h.blobs.Container(),
		BlobName:      blob,
		SASToken:      token,
	}, nil
}

// CompleteFileUpload takes device id's word that an upload ended. A
// successful one sends the back ends a file notification with what the
// storage account says of the blob; a failed one, nothing.
func (h *Hub) CompleteFileUpload(ctx context.Context, id string, res twinhub.FileUploadResult) error {
	if h.blobs == nil {
		return errNoFileUpload()
	}
	blob, ok := h.readUploadCorrelation(res.CorrelationID)
	if !ok || !strings.HasPrefix(blob, id+"/") {
		return twinhub.ErrInvalid("correlationId %q is not one this hub gave device '%s', or it has expired", res.CorrelationID, id)
	}
	if h.uploads != nil {
		// The upload is no longer under way, whatever its outcome.
		if err := h.uploads.End(ctx, id, res.CorrelationID); err != nil {
			return err
		}
	}
	if !res.IsSuccess {
		return nil
	}
	info, err := h.blobs.Blob(ctx, blob)
	if errors.Is(err, twinhub.ErrNotFound) {
		return twinhub.ErrInvalid("the upload of %s is reported successful, but the storage account has no such blob", blob)
	} else if err != nil {
		return twinhub.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the file upload storage account: %v", err)
	}
	return h.AddFileNotification(ctx, twinhub.FileNotification{
		DeviceID: id, BlobURI: info.URI, BlobName: blob,
		LastUpdatedTime: twinhub.Time{Time: info.LastModified.UTC()}, BlobSizeInBytes: info.Size,
	})
}

// uploadCorrelation is base64url of: the expiry (Unix seconds, 8 bytes),
// the blob name, and 16 bytes of HMAC-SHA256 over both.
func (h *Hub) uploadCorrelation(blob string, expiry time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(expiry.Unix()))
	b = append(b, blob...)
	mac := hmac.New(sha256.New, h.derivedKey("file upload"))
	mac.Write(b)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(b)[:len(b)+uploadMAC])
}

// readUploadCorrelation returns the blob a correlation id names, if the
// hub made it and the upload's time (the token's, and as long again for
// the device to report) has not run out.
func (h *Hub) readUploadCorrelation(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 8+1+uploadMAC {
		return "", false
	}
	body, sum := b[:len(b)-uploadMAC], b[len(b)-uploadMAC:]
	mac := hmac.New(sha256.New, h.derivedKey("file upload"))
	mac.Write(body)
	if !hmac.Equal(sum, mac.Sum(nil)[:uploadMAC]) {
		return "", false
	}
	expiry := time.Unix(int64(binary.BigEndian.Uint64(body[:8])), 0)
	if time.Now().After(expiry.Add(twinhub.FileUploadSASTTL)) {
		return "", false
	}
	return string(body[8:]), true
}
