//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// kernelErr marks err as ErrNotSupported if it comes from a missing kernel
// feature, so callers can tell an old kernel from a failure.
func kernelErr(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}
