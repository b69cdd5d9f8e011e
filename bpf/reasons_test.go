//go:build linux

package bpf

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestReasonNames checks the Go names of the counters against the reason
// enums of the C files, read from the objects' BTF: same order, one name
// per reason, each the enumerator's name in lower case (less REASON_).
// Needs no root.
func TestReasonNames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		load     func() (*ebpf.CollectionSpec, error)
		enum     string // the C enum
		counters string // the map counting it
		names    []string
	}{
		{"cgroup", loadCgroup, "reason", "counters", reasonNames[:]},
		{"guard", loadGuard, "reason", "guard_counters", guardReasonNames[:]},
		{"steer", loadGuard, "steer_reason", "steer_counters", steerReasonNames[:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := tc.load()
			if err != nil {
				t.Fatal(err)
			}
			var enum *btf.Enum
			if err := spec.Types.TypeByName(tc.enum, &enum); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, v := range enum.Values {
				if strings.HasSuffix(v.Name, "REASON_MAX") {
					continue
				}
				if v.Value != uint64(len(want)) {
					t.Fatalf("%s = %d, want %d: reasons are numbered densely",
						v.Name, v.Value, len(want))
				}
				want = append(want, strings.ToLower(strings.TrimPrefix(v.Name, "REASON_")))
			}
			if strings.Join(tc.names, " ") != strings.Join(want, " ") {
				t.Errorf("Go names %q,\nC enum %q", tc.names, want)
			}
			counters := spec.Maps[tc.counters]
			if int(counters.MaxEntries) != len(tc.names) {
				t.Errorf("counters map has %d entries, want %d", counters.MaxEntries, len(tc.names))
			}
		})
	}
}
