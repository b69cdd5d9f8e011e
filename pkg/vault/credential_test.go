package vault

import (
	"testing"
)

// The engine-independent credential tests are in package storetest (run for
// Bolt by bolt_suite_test.go); these look at the sealed records.

func TestRotateNewDataKey(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	before := sealedRecord(t, s, "prod", "openai")

	if _, err := s.RotateCredential("prod", "openai", []byte(secretB)); err != nil {
		t.Fatal(err)
	}
	after := sealedRecord(t, s, "prod", "openai")
	if string(before[1:1+wrappedKeyLen]) == string(after[1:1+wrappedKeyLen]) {
		t.Error("rotation kept the old wrapped data key")
	}
}
