//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// bpffsRoot is where a BPF filesystem is conventionally mounted.
const bpffsRoot = "/sys/fs/bpf"

// preparePinDir makes dir, mode 0700, on a BPF filesystem. If dir is below
// /sys/fs/bpf and nothing is mounted there yet, it mounts one first.
func preparePinDir(dir string) error {
	dir = filepath.Clean(dir)
	if strings.HasPrefix(dir, bpffsRoot+"/") {
		if err := mountBPFFS(bpffsRoot); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a BPF filesystem", dir)
	}
	return nil
}

// mountBPFFS mounts a BPF filesystem at dir unless one is there already.
// Checking by filesystem type rather than /proc/mounts also sees a mount
// made by a concurrent loader a moment ago.
func mountBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount BPF filesystem at %s: %w", dir, err)
	}
	return nil
}

// dropIncompatiblePins removes the maps pinned in dir that spec's maps of
// the same name cannot reuse (after an upgrade changed a key, value or
// size), so that loading spec pins fresh ones instead of failing. Programs
// still attached keep using the old maps until they are updated. It returns
// the names of the maps it removed.
func dropIncompatiblePins(spec *ebpf.CollectionSpec, dir string) ([]string, error) {
	var dropped []string
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return dropped, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		err = ms.Compatible(m)
		m.Close()
		if err == nil {
			continue
		}
		if err := os.Remove(path); err != nil {
			return dropped, fmt.Errorf("replace incompatible pinned map %s: %w", path, err)
		}
		dropped = append(dropped, name)
	}
	return dropped, nil
}

// unpinMaps removes the pins of spec's pinned maps from dir.
func unpinMaps(spec *ebpf.CollectionSpec, dir string) error {
	var errs []error
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin map %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// unpinNone clears the pinning of spec's maps, for a load without PinDir.
func unpinNone(spec *ebpf.CollectionSpec) {
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
	}
}

// removePinDir removes dir if nothing is left in it: it may be shared by
// the cgroup capture and the guard.
func removePinDir(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTEMPTY) {
		return nil
	}
	return fmt.Errorf("remove pin directory: %w", err)
}

// destroyLink detaches l from its hook whoever else holds it, removes its
// pin and releases it.
func destroyLink(l link.Link) error {
	var errs []error
	if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
		errs = append(errs, fmt.Errorf("detach link: %w", err))
	}
	if err := l.Unpin(); err != nil { // no-op for a link that is not pinned
		errs = append(errs, fmt.Errorf("unpin link: %w", err))
	}
	errs = append(errs, l.Close())
	return errors.Join(errs...)
}
