//go:build !linux

// Package cgroup finds the cgroup v2 hierarchy and manages the per-sandbox
// cgroups keygate creates below its own parent.
package cgroup

import (
	"context"
	"errors"
	"os"
)

// ErrNotSupported is returned on systems without cgroup v2.
var ErrNotSupported = errors.New("cgroups need Linux")

// Group is one cgroup v2 directory.
type Group struct{ Path string }

// Mountpoint reports ErrNotSupported.
func Mountpoint() (string, error) { return "", ErrNotSupported }

// Create reports ErrNotSupported.
func Create(string) (*Group, error) { return nil, ErrNotSupported }

// Open reports ErrNotSupported.
func (*Group) Open() (*os.File, error) { return nil, ErrNotSupported }

// Kill reports ErrNotSupported.
func (*Group) Kill() error { return ErrNotSupported }

// Remove reports ErrNotSupported.
func (*Group) Remove(context.Context) error { return ErrNotSupported }
