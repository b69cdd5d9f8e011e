package vault

import (
	"errors"
	"testing"
)

func TestVaultLifecycle(t *testing.T) {
	s, _, _ := openTestStore(t)
	for _, name := range []string{"staging", "prod", "dev"} {
		if err := s.CreateVault(name); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)

	infos, err := s.Vaults()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, info := range infos {
		names = append(names, info.Name)
	}
	if len(names) != 3 || names[0] != "dev" || names[1] != "prod" || names[2] != "staging" {
		t.Fatalf("Vaults() names = %v, want sorted [dev prod staging]", names)
	}

	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Vault("prod")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Archived || info.ArchivedAt == nil || info.Credentials != 1 || info.Created.IsZero() {
		t.Errorf("archived vault info = %+v", info)
	}
}

func TestVaultErrors(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	mustAdd(t, s, testCredential("old", "openai", "OPENAI_API_KEY"), secretB)
	if err := s.ArchiveVault("old"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		op      func() error
		want    error
		message string
	}{
		{"create existing", func() error { return s.CreateVault("prod") }, ErrExists,
			`vault "prod": already exists`},
		{"create over archived", func() error { return s.CreateVault("old") }, ErrExists,
			`vault "old": already exists`},
		{"create invalid", func() error { return s.CreateVault("Prod") }, ErrInvalid, ""},
		{"describe missing", func() error { _, err := s.Vault("nope"); return err }, ErrNotFound,
			`vault "nope": not found`},
		{"archive missing", func() error { return s.ArchiveVault("nope") }, ErrNotFound, ""},
		{"archive twice", func() error { return s.ArchiveVault("old") }, ErrArchived,
			`vault "old": vault archived`},
		{"add to archived", func() error {
			return s.AddCredential(testCredential("old", "x", "X_KEY"), []byte(secretA))
		}, ErrArchived, ""},
		{"add to missing vault", func() error {
			return s.AddCredential(testCredential("nope", "x", "X_KEY"), []byte(secretA))
		}, ErrNotFound, `vault "nope": not found`},
		{"rotate in archived", func() error {
			_, err := s.RotateCredential("old", "openai", []byte(secretA))
			return err
		}, ErrArchived, ""},
		{"remove in archived", func() error { return s.RemoveCredential("old", "openai") }, ErrArchived, ""},
		{"secret in archived", func() error { _, _, err := s.Secret("old", "openai"); return err }, ErrArchived,
			`vault "old": vault archived`},
		{"list missing vault", func() error { _, err := s.Credentials("nope"); return err }, ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			checkNoLeak(t, err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if tt.message != "" && err.Error() != tt.message {
				t.Errorf("error = %q, want %q", err, tt.message)
			}
		})
	}
}

func TestArchivedVaultKeepsMetadata(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}

	creds, err := s.Credentials("prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 1 || creds[0].Name != "openai" || creds[0].Env != "OPENAI_API_KEY" {
		t.Fatalf("Credentials after archive = %+v", creds)
	}
	if _, err := s.Credential("prod", "openai"); err != nil {
		t.Errorf("Credential after archive: %v", err)
	}
	if rec := sealedRecord(t, s, "prod", "openai"); rec != nil {
		t.Error("sealed record still present after archive")
	}
}
