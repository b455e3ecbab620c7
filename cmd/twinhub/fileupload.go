package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/twinhub/twinhub"
	"github.com/twinhub/twinhub/blobstore"
)

// storageOptions are the HTTP options of the hub's calls to Azure
// Storage (file upload's account, import and export jobs' containers):
// the system's CAs and the hub's own (caFile) are trusted, so that a
// local emulator such as Azurite can serve TLS with a certificate from
// `twinhub ca issue`.
func storageOptions(caFile string) *policy.ClientOptions {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(caFile); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &policy.ClientOptions{Transport: &http.Client{Transport: transport}}
}

// openFileUpload opens the storage account of file uploads, when one is
// given (--file-upload-storage, TWINHUB_FILE_UPLOAD_STORAGE or the config
// file).
func openFileUpload(f *serveFlags, opts *policy.ClientOptions) (twinhub.BlobStorage, error) {
	conn := f.fileUploadStorage
	if conn == "" {
		return nil, nil
	}
	s, err := blobstore.Open(conn, f.fileUploadContainer, opts)
	if err != nil {
		return nil, fmt.Errorf("--file-upload-storage: %w", err)
	}
	return s, nil
}
