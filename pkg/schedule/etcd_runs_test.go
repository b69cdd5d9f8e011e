package schedule

import (
	"strings"
	"testing"
)

func TestTrimPlan(t *testing.T) {
	tests := []struct {
		name  string
		keys  string // sorted, space-separated
		key   string
		keep  int
		put   bool
		below string
	}{
		{"room left", "b c", "d", 3, true, ""},
		{"newest pushes oldest out", "b c d", "e", 3, true, "c"},
		{"middle pushes oldest out", "b c e", "d", 3, true, "c"},
		{"oldest is dropped at once", "b c d", "a", 3, false, "b"},
		{"replacement never trims", "b c d e", "c", 2, true, ""},
		{"keep lowered drops many", "a b c d e", "f", 2, true, "e"},
		{"first run", "", "a", 1, true, ""},
		{"keep one", "a", "b", 1, true, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put, below := trimPlan(strings.Fields(tt.keys), tt.key, tt.keep)
			if put != tt.put || below != tt.below {
				t.Errorf("trimPlan = %v, %q; want %v, %q", put, below, tt.put, tt.below)
			}
		})
	}
}
