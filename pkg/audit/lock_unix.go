//go:build unix

package audit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive, non-blocking flock on f, so a second writer,
// in this process or another, cannot interleave lines with the first. The
// lock goes with the file's last close.
func lockFile(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("lock %s: %w (is another keygated running?)", f.Name(), err)
	}
	return nil
}
