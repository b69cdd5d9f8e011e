package mapkeys

import (
	"slices"
	"testing"
)

func TestSortedUnion(t *testing.T) {
	a := map[string]int{"b": 1, "a": 2}
	b := map[string][]byte{"c": nil, "a": nil}
	if got := SortedUnion(a, b); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("SortedUnion = %v", got)
	}
	if got := SortedUnion[int, int](nil, nil); len(got) != 0 {
		t.Fatalf("empty = %v", got)
	}
}
