// Package mapkeys lists the keys of string-keyed maps.
package mapkeys

import "slices"

// SortedUnion returns the keys of a and b together, sorted, once each.
func SortedUnion[A, B any](a map[string]A, b map[string]B) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
