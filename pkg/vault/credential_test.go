package vault

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAddSecretRoundTrip(t *testing.T) {
	s, _, _ := openTestStore(t)
	c := Credential{
		Vault: "prod", Name: "openai", Env: "OPENAI_API_KEY",
		Domains: []string{"API.OpenAI.com.", "*.openai.com"},
		Header:  "Authorization: Bearer {}",
	}
	before := time.Now().Add(-time.Second)
	mustAdd(t, s, c, secretA)

	got, meta, err := s.Secret("prod", "openai")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Bytes()) != secretA {
		t.Fatal("Secret returned a different value (values withheld)")
	}
	if meta.Version != 1 || meta.Created.Before(before) || !meta.Updated.Equal(meta.Created) {
		t.Errorf("metadata = %+v, want version 1 and fresh equal timestamps", meta)
	}
	if meta.Domains[0] != "api.openai.com" || meta.Domains[1] != "*.openai.com" {
		t.Errorf("domains = %v, want normalised", meta.Domains)
	}
	if meta.Header != c.Header || meta.Env != c.Env {
		t.Errorf("metadata = %+v, want header and env kept", meta)
	}

	listed, err := s.Credential("prod", "openai")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(listed) != fmt.Sprint(meta) {
		t.Errorf("Credential() = %+v, Secret() metadata = %+v", listed, meta)
	}
}

func TestRotate(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	before := sealedRecord(t, s, "prod", "openai")

	rotated, err := s.RotateCredential("prod", "openai", []byte(secretB))
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Version != 2 || !rotated.Updated.After(rotated.Created) {
		t.Errorf("rotated metadata = %+v, want version 2 and a later Updated", rotated)
	}

	got, meta, err := s.Secret("prod", "openai")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Bytes()) != secretB {
		t.Fatal("Secret after rotation is not the new value (values withheld)")
	}
	if meta.Version != 2 || !meta.Updated.Equal(rotated.Updated) {
		t.Errorf("stored metadata = %+v, returned %+v", meta, rotated)
	}
	after := sealedRecord(t, s, "prod", "openai")
	if string(before[1:1+wrappedKeyLen]) == string(after[1:1+wrappedKeyLen]) {
		t.Error("rotation kept the old wrapped data key")
	}
}

func TestCredentialLimit(t *testing.T) {
	s, _, _ := openTestStore(t)
	for i := range MaxCredentials {
		mustAdd(t, s, testCredential("prod", fmt.Sprintf("c%02d", i), fmt.Sprintf("KEY_%02d", i)), secretA)
	}

	err := s.AddCredential(testCredential("prod", "one-more", "ONE_MORE"), []byte(secretA))
	checkNoLeak(t, err)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("21st credential: error %v, want ErrLimit", err)
	}
	want := `vault "prod": credential "one-more": credential limit reached: a vault holds at most 20`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	// Removing one frees a slot.
	if err := s.RemoveCredential("prod", "c00"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCredential(testCredential("prod", "one-more", "ONE_MORE"), []byte(secretA)); err != nil {
		t.Fatalf("add after remove: %v", err)
	}
}

func TestAddRefuses(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	mustAdd(t, s, testCredential("other", "x", "SHARED_KEY"), secretA)

	tests := []struct {
		name    string
		cred    Credential
		secret  string
		want    error
		message string
	}{
		{"duplicate name", testCredential("prod", "openai", "OTHER_KEY"), secretB, ErrExists,
			`vault "prod": credential "openai": already exists`},
		{"duplicate env", testCredential("prod", "second", "OPENAI_API_KEY"), secretB, ErrExists,
			`vault "prod": credential "second": ` +
				`env OPENAI_API_KEY is already used by credential "openai": already exists`},
		{"empty secret", testCredential("prod", "empty", "EMPTY_KEY"), "", ErrInvalid,
			`vault "prod": credential "empty": invalid argument: empty secret`},
		{"reserved env", testCredential("prod", "path", "PATH"), secretB, ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AddCredential(tt.cred, []byte(tt.secret))
			checkNoLeak(t, err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if tt.message != "" && err.Error() != tt.message {
				t.Errorf("error = %q, want %q", err, tt.message)
			}
		})
	}

	// The same env var in another vault is fine.
	if err := s.AddCredential(testCredential("prod", "shared", "SHARED_KEY"), []byte(secretB)); err != nil {
		t.Errorf("env used in another vault: %v", err)
	}
}

func TestRemoveCredential(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	mustAdd(t, s, testCredential("prod", "b", "KEY_B"), secretB)
	if err := s.RemoveCredential("prod", "a"); err != nil {
		t.Fatal(err)
	}

	_, _, err := s.Secret("prod", "a")
	if !errors.Is(err, ErrNotFound) || err.Error() != `vault "prod": credential "a": not found` {
		t.Errorf("Secret after remove: %v", err)
	}
	if err := s.RemoveCredential("prod", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if got, _, err := s.Secret("prod", "b"); err != nil || string(got.Bytes()) != secretB {
		t.Errorf("other credential after remove: err %v", err)
	}
	creds, err := s.Credentials("prod")
	if err != nil || len(creds) != 1 || creds[0].Name != "b" {
		t.Errorf("Credentials after remove = %v, %v", creds, err)
	}
	// The env var is free again.
	if err := s.AddCredential(testCredential("prod", "c", "KEY_A"), []byte(secretA)); err != nil {
		t.Errorf("reuse env after remove: %v", err)
	}
}

func TestCredentialsSorted(t *testing.T) {
	s, _, _ := openTestStore(t)
	for _, name := range []string{"zeta", "alpha", "mid"} {
		mustAdd(t, s, testCredential("prod", name, "KEY_"+name), secretA)
	}
	creds, err := s.Credentials("prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 3 || creds[0].Name != "alpha" || creds[1].Name != "mid" || creds[2].Name != "zeta" {
		t.Errorf("Credentials() = %+v, want sorted by name", creds)
	}
}

// TestConcurrentUse runs readers against rotations and removals, whose
// compactions swap the database file underneath them (run with -race).
func TestConcurrentUse(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Go(func() {
			for range 25 {
				got, _, err := s.Secret("prod", "a")
				if err != nil {
					errs <- err
					return
				}
				if v := string(got.Bytes()); v != secretA && v != secretB {
					errs <- errors.New("read a value that was never stored")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			secret := []string{secretA, secretB}[i%2]
			if _, err := s.RotateCredential("prod", "a", []byte(secret)); err != nil {
				errs <- err
				return
			}
			name := fmt.Sprintf("tmp%d", i)
			if err := s.AddCredential(testCredential("prod", name, "TMP_KEY"), []byte(secretB)); err != nil {
				errs <- err
				return
			}
			if err := s.RemoveCredential("prod", name); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		checkNoLeak(t, err)
		t.Error(err)
	}
}
