//go:build linux

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// readCounters sums the per-CPU counters in m, a BPF_MAP_TYPE_PERCPU_ARRAY
// indexed by reason, and returns them by reason name.
func readCounters(m *ebpf.Map, names []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		var perCPU []uint64
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[name] = sum
	}
	return out, nil
}
