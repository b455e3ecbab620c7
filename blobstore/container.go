package blobstore

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/twinhub/twinhub"
)

// Containers opens the blob containers that import and export jobs name
// by a SAS URI (the caller's storage account, not the hub's), with the
// HTTP options the hub uses for storage (its trusted CAs).
type Containers struct {
	opts *policy.ClientOptions
}

// NewContainers returns an opener with opts (nil: the SDK's defaults).
func NewContainers(opts *policy.ClientOptions) *Containers {
	return &Containers{opts: opts}
}

// Open checks that uri is an HTTPS or HTTP container URL carrying a SAS
// token, and returns the container. Nothing is sent yet: a URI that does
// not grant what the job needs fails the job when it reads or writes.
func (c *Containers) Open(uri string) (twinhub.BlobContainer, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%q is not an http(s) URL of a blob container", redact(uri))
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("%s names no container", redact(uri))
	}
	if u.Query().Get("sig") == "" {
		return nil, fmt.Errorf("%s has no SAS token (sig=...)", redact(uri))
	}
	var copts *container.ClientOptions
	if c.opts != nil {
		copts = &container.ClientOptions{ClientOptions: *c.opts}
	}
	client, err := container.NewClientWithNoCredential(uri, copts)
	if err != nil {
		return nil, err
	}
	return &Container{client: client}, nil
}

// redact drops the query (the SAS signature) of a URI for messages.
func redact(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i] + "?..."
	}
	return uri
}

// Container is one blob container reached by its SAS URI.
type Container struct {
	client *container.Client
}

var _ twinhub.BlobContainer = (*Container)(nil)

// Read opens a blob for reading: twinhub.ErrNotFound when it (or the
// container) does not exist.
func (c *Container) Read(ctx context.Context, name string) (io.ReadCloser, error) {
	resp, err := c.client.NewBlobClient(name).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil, twinhub.ErrNotFound
	} else if err != nil {
		return nil, storageError(err)
	}
	return resp.Body, nil
}

// Write stores what r gives as the block blob name, replacing one that
// is there, in blocks of 4 MiB as r gives them.
func (c *Container) Write(ctx context.Context, name string, r io.Reader) error {
	ct := "text/plain; charset=utf-8"
	_, err := c.client.NewBlockBlobClient(name).UploadStream(ctx, r, &blockblob.UploadStreamOptions{
		BlockSize: 4 << 20, HTTPHeaders: &blob.HTTPHeaders{BlobContentType: &ct}})
	return storageError(err)
}

// storageError keeps an error of the storage service short: its code,
// not the whole response (whose request URL carries the SAS token).
func storageError(err error) error {
	if err == nil {
		return nil
	}
	for _, code := range []bloberror.Code{bloberror.AuthenticationFailed, bloberror.AuthorizationPermissionMismatch,
		bloberror.AuthorizationFailure, bloberror.ContainerNotFound, bloberror.BlobNotFound} {
		if bloberror.HasCode(err, code) {
			return fmt.Errorf("the storage account answered %s", code)
		}
	}
	return fmt.Errorf("the storage account: %s", redactAll(err.Error()))
}

// redactAll blanks SAS signatures anywhere in a text.
func redactAll(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "sig=")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+4])
		b.WriteString("REDACTED")
		s = s[i+4:]
		s = s[strings.IndexFunc(s+" ", func(r rune) bool { return r == '&' || r == ' ' || r == '\n' || r == '"' }):]
	}
}
