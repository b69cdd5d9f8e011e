// Package e2e holds keygate's end-to-end tests; see harness_test.go. They
// need Linux and root.
package e2e
