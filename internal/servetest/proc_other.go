//go:build !linux

package servetest

import "os/exec"

// dieWithParent does nothing where there is no parent-death signal: a hub
// whose test binary dies without its cleanups lives on.
func dieWithParent(*exec.Cmd) {}
