package vault

import (
	"testing"
)

// The engine-independent tests of vault lifecycle and errors are in package
// storetest (run for Bolt by bolt_suite_test.go); these look inside the file.

func TestArchiveDropsSealedRecords(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}
	if rec := sealedRecord(t, s, "prod", "openai"); rec != nil {
		t.Error("sealed record still present after archive")
	}
	if _, err := s.Credential("prod", "openai"); err != nil {
		t.Errorf("metadata gone after archive: %v", err)
	}
}
