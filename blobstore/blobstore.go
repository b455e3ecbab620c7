// Package blobstore is file upload's side of Azure Storage: the SAS URIs
// a device uploads a file with, and what the hub reads of the blob once
// the device says it is done. It works against Azure Storage and any
// service that speaks its blob API with shared-key accounts (Azurite).
// Signing and requests go through the Azure SDK's azblob.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/twinhub/twinhub"
)

// Store is one container of one storage account.
type Store struct {
	container string
	service   *url.URL // the account's blob endpoint, ending in /
	cred      *azblob.SharedKeyCredential
	client    *azblob.Client

	once    sync.Mutex
	created bool
}

var _ twinhub.BlobStorage = (*Store)(nil)

// Open reads an Azure Storage connection string (AccountName and
// AccountKey, with BlobEndpoint or DefaultEndpointsProtocol and
// EndpointSuffix, as the portal and Azurite give them) for container.
// Connection strings with a SharedAccessSignature instead of a key are
// refused: the hub signs SAS tokens for devices with the key.
func Open(connectionString, container string, opts *policy.ClientOptions) (*Store, error) {
	if container == "" {
		return nil, errors.New("file upload needs a container name")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimRight(connectionString, ";"), ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("storage connection string: %q is not key=value", part)
		}
		fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	account, key := fields["AccountName"], fields["AccountKey"]
	if account == "" || key == "" {
		return nil, errors.New("storage connection string: AccountName and AccountKey are needed (the hub signs the devices' SAS tokens with the key)")
	}
	endpoint := fields["BlobEndpoint"]
	if endpoint == "" {
		protocol, suffix := fields["DefaultEndpointsProtocol"], fields["EndpointSuffix"]
		if protocol == "" {
			protocol = "https"
		}
		if suffix == "" {
			suffix = "core.windows.net"
		}
		endpoint = fmt.Sprintf("%s://%s.blob.%s", protocol, account, suffix)
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("storage connection string: BlobEndpoint %q is not a URL", endpoint)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("storage connection string: BlobEndpoint %q: devices upload over HTTPS only", endpoint)
	}
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		return nil, fmt.Errorf("storage connection string: %w", err)
	}
	var copts *azblob.ClientOptions
	if opts != nil {
		copts = &azblob.ClientOptions{ClientOptions: *opts}
	}
	client, err := azblob.NewClientWithSharedKeyCredential(endpoint, cred, copts)
	if err != nil {
		return nil, err
	}
	return &Store{container: container, service: u, cred: cred, client: client}, nil
}

// HostName is what a device puts before /container/blob: the account's
// host, with the path of a path-style endpoint (Azurite's
// host:port/account), because the device SDKs build the blob URL as
// https://{hostName}/{container}/{blob}{sas}.
func (s *Store) HostName() string {
	return s.service.Host + strings.TrimSuffix(s.service.Path, "/")
}

// Container is the container devices upload to.
func (s *Store) Container() string { return s.container }

// UploadSAS makes the container when it is missing (once), and returns a
// SAS token, starting with "?", that lets its holder write blob until
// expiry and nothing else.
func (s *Store) UploadSAS(ctx context.Context, blob string, expiry time.Time) (string, error) {
	if err := s.ensureContainer(ctx); err != nil {
		return "", err
	}
	perms := sas.BlobPermissions{Create: true, Write: true}
	q, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPS,
		StartTime:     time.Now().Add(-5 * time.Minute).UTC(),
		ExpiryTime:    expiry.UTC(),
		Permissions:   perms.String(),
		ContainerName: s.container,
		BlobName:      blob,
	}.SignWithSharedKey(s.cred)
	if err != nil {
		return "", err
	}
	return "?" + q.Encode(), nil
}

func (s *Store) ensureContainer(ctx context.Context) error {
	s.once.Lock()
	defer s.once.Unlock()
	if s.created {
		return nil
	}
	_, err := s.client.CreateContainer(ctx, s.container, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("creating the file upload container %s: %w", s.container, err)
	}
	s.created = true
	return nil
}

// Blob reads what a file notification says of an uploaded blob: its URI,
// size and last change. twinhub.ErrNotFound when there is no such blob.
func (s *Store) Blob(ctx context.Context, blob string) (twinhub.BlobInfo, error) {
	c := s.client.ServiceClient().NewContainerClient(s.container).NewBlobClient(blob)
	p, err := c.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return twinhub.BlobInfo{}, twinhub.ErrNotFound
	} else if err != nil {
		return twinhub.BlobInfo{}, err
	}
	info := twinhub.BlobInfo{URI: c.URL()}
	if p.ContentLength != nil {
		info.Size = *p.ContentLength
	}
	if p.LastModified != nil {
		info.LastModified = *p.LastModified
	}
	return info, nil
}
