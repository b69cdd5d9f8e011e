// Package storetest is the contract every vault.Store engine meets: vault
// lifecycle, credential rules, the errors callers map to outcomes, change
// notification and safety under concurrent use. An engine's tests call Run
// with a function that opens a fresh, empty store.
//
// The tests hold engines to the embedded engine's exact error messages, so
// an operator sees the same words whichever engine a host runs.
package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/pkg/vault"
)

// Test secrets are distinctive so a leak into any output is easy to find.
const (
	secretA = "sk-test-ALPHA-5f1c9e2b7d"
	secretB = "sk-test-BRAVO-0a8e3c6f41"
)

// Run runs the contract against stores made by open. Each subtest calls
// open once and must get a store of its own holding no vault; open closes
// it at the end of the test (t.Cleanup). Closing it again must be harmless.
func Run(t *testing.T, open func(t *testing.T) vault.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s vault.Store)
	}{
		{"VaultLifecycle", testVaultLifecycle},
		{"VaultErrors", testVaultErrors},
		{"ArchivedVaultKeepsMetadata", testArchivedVaultKeepsMetadata},
		{"ArchiveThenSecret", testArchiveThenSecret},
		{"AddSecretRoundTrip", testAddSecretRoundTrip},
		{"Rotate", testRotate},
		{"CredentialLimit", testCredentialLimit},
		{"AddRefuses", testAddRefuses},
		{"RemoveCredential", testRemoveCredential},
		{"CredentialsSorted", testCredentialsSorted},
		{"Watch", testWatch},
		{"ConcurrentUse", testConcurrentUse},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

func testCredential(vaultName, name, env string) vault.Credential {
	return vault.Credential{Vault: vaultName, Name: name, Env: env, Domains: []string{"api.example.com"}}
}

// mustAdd creates the vault if needed and adds a credential.
func mustAdd(t *testing.T, s vault.Store, c vault.Credential, secret string) {
	t.Helper()
	if err := s.CreateVault(c.Vault); err != nil && !errors.Is(err, vault.ErrExists) {
		t.Fatal(err)
	}
	if err := s.AddCredential(c, []byte(secret)); err != nil {
		t.Fatal(err)
	}
}

// checkNoLeak fails if err's text holds a test secret.
func checkNoLeak(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, secret := range []string{secretA, secretB} {
		if strings.Contains(err.Error(), secret) {
			t.Fatal("error message contains a secret value (message withheld)")
		}
	}
}

// checkErr fails unless err wraps want and, if message is set, reads
// exactly message. It never prints a secret.
func checkErr(t *testing.T, err, want error, message string) {
	t.Helper()
	checkNoLeak(t, err)
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	if message != "" && err.Error() != message {
		t.Errorf("error = %q, want %q", err, message)
	}
}

func testVaultLifecycle(t *testing.T, s vault.Store) {
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
	if strings.Join(names, " ") != "dev prod staging" {
		t.Fatalf("Vaults() names = %v, want sorted [dev prod staging]", names)
	}
	info, err := s.Vault("prod")
	if err != nil {
		t.Fatal(err)
	}
	if info.Archived || info.ArchivedAt != nil || info.Credentials != 1 || info.Created.IsZero() {
		t.Errorf("live vault info = %+v", info)
	}

	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}
	info, err = s.Vault("prod")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Archived || info.ArchivedAt == nil || info.Credentials != 1 || info.Created.IsZero() {
		t.Errorf("archived vault info = %+v", info)
	}
}

func testVaultErrors(t *testing.T, s vault.Store) {
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
		{"create existing", func() error { return s.CreateVault("prod") }, vault.ErrExists,
			`vault "prod": already exists`},
		{"create over archived", func() error { return s.CreateVault("old") }, vault.ErrExists,
			`vault "old": already exists`},
		{"create invalid", func() error { return s.CreateVault("Prod") }, vault.ErrInvalid, ""},
		{"describe missing", func() error { _, err := s.Vault("nope"); return err }, vault.ErrNotFound,
			`vault "nope": not found`},
		{"archive missing", func() error { return s.ArchiveVault("nope") }, vault.ErrNotFound, ""},
		{"archive twice", func() error { return s.ArchiveVault("old") }, vault.ErrArchived,
			`vault "old": vault archived`},
		{"add to archived", func() error {
			return s.AddCredential(testCredential("old", "x", "X_KEY"), []byte(secretA))
		}, vault.ErrArchived, ""},
		{"add to missing vault", func() error {
			return s.AddCredential(testCredential("nope", "x", "X_KEY"), []byte(secretA))
		}, vault.ErrNotFound, `vault "nope": not found`},
		{"rotate in archived", func() error {
			_, err := s.RotateCredential("old", "openai", []byte(secretA))
			return err
		}, vault.ErrArchived, ""},
		{"rotate missing", func() error {
			_, err := s.RotateCredential("prod", "nope", []byte(secretA))
			return err
		}, vault.ErrNotFound, `vault "prod": credential "nope": not found`},
		{"rotate empty secret", func() error {
			_, err := s.RotateCredential("prod", "openai", nil)
			return err
		}, vault.ErrInvalid, `vault "prod": credential "openai": invalid argument: empty secret`},
		{"remove in archived", func() error { return s.RemoveCredential("old", "openai") }, vault.ErrArchived, ""},
		{"remove missing", func() error { return s.RemoveCredential("prod", "nope") }, vault.ErrNotFound, ""},
		{"secret in archived", func() error { _, _, err := s.Secret("old", "openai"); return err },
			vault.ErrArchived, `vault "old": vault archived`},
		{"secret in missing vault", func() error { _, _, err := s.Secret("nope", "x"); return err },
			vault.ErrNotFound, `vault "nope": not found`},
		{"list missing vault", func() error { _, err := s.Credentials("nope"); return err },
			vault.ErrNotFound, ""},
		{"describe missing credential", func() error { _, err := s.Credential("prod", "nope"); return err },
			vault.ErrNotFound, `vault "prod": credential "nope": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.op(), tt.want, tt.message)
		})
	}
}

func testArchivedVaultKeepsMetadata(t *testing.T, s vault.Store) {
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
}

func testArchiveThenSecret(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Secret("prod", "openai")
	checkErr(t, err, vault.ErrArchived, `vault "prod": vault archived`)
	if got.Len() != 0 {
		t.Fatalf("Secret after archive returned %d bytes", got.Len())
	}
}

func testAddSecretRoundTrip(t *testing.T, s vault.Store) {
	c := vault.Credential{
		Vault: "prod", Name: "openai", Env: "OPENAI_API_KEY",
		Domains: []string{"API.OpenAI.com.", "*.openai.com"},
		Header:  "Authorization: Bearer {}",
		Prefix:  "sk-",
		Query:   true,
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
	if len(meta.Domains) != 2 || meta.Domains[0] != "api.openai.com" || meta.Domains[1] != "*.openai.com" {
		t.Errorf("domains = %v, want normalised", meta.Domains)
	}
	if meta.Header != c.Header || meta.Env != c.Env || meta.Prefix != c.Prefix || !meta.Query {
		t.Errorf("metadata = %+v, want header, env, prefix and query kept", meta)
	}

	listed, err := s.Credential("prod", "openai")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(listed) != fmt.Sprint(meta) {
		t.Errorf("Credential() = %+v, Secret() metadata = %+v", listed, meta)
	}
}

func testRotate(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)

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

	again, err := s.RotateCredential("prod", "openai", []byte(secretA))
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != 3 || !again.Created.Equal(rotated.Created) {
		t.Errorf("second rotation = %+v, want version 3 and the same Created", again)
	}
	if got, _, err := s.Secret("prod", "openai"); err != nil || string(got.Bytes()) != secretA {
		t.Errorf("Secret after second rotation: err %v (values withheld)", err)
	}
}

func testCredentialLimit(t *testing.T, s vault.Store) {
	for i := range vault.MaxCredentials {
		mustAdd(t, s, testCredential("prod", fmt.Sprintf("c%02d", i), fmt.Sprintf("KEY_%02d", i)), secretA)
	}

	err := s.AddCredential(testCredential("prod", "one-more", "ONE_MORE"), []byte(secretA))
	checkErr(t, err, vault.ErrLimit,
		`vault "prod": credential "one-more": credential limit reached: a vault holds at most 20`)

	// Removing one frees a slot.
	if err := s.RemoveCredential("prod", "c00"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCredential(testCredential("prod", "one-more", "ONE_MORE"), []byte(secretA)); err != nil {
		t.Fatalf("add after remove: %v", err)
	}
	if info, err := s.Vault("prod"); err != nil || info.Credentials != vault.MaxCredentials {
		t.Errorf("Vault() = %+v, %v; want %d credentials", info, err, vault.MaxCredentials)
	}
}

func testAddRefuses(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	mustAdd(t, s, testCredential("other", "x", "SHARED_KEY"), secretA)

	tests := []struct {
		name    string
		cred    vault.Credential
		secret  string
		want    error
		message string
	}{
		{"duplicate name", testCredential("prod", "openai", "OTHER_KEY"), secretB, vault.ErrExists,
			`vault "prod": credential "openai": already exists`},
		{"duplicate env", testCredential("prod", "second", "OPENAI_API_KEY"), secretB, vault.ErrExists,
			`vault "prod": credential "second": ` +
				`env OPENAI_API_KEY is already used by credential "openai": already exists`},
		{"empty secret", testCredential("prod", "empty", "EMPTY_KEY"), "", vault.ErrInvalid,
			`vault "prod": credential "empty": invalid argument: empty secret`},
		{"reserved env", testCredential("prod", "path", "PATH"), secretB, vault.ErrInvalid, ""},
		{"no domain", vault.Credential{Vault: "prod", Name: "nodomain", Env: "NO_DOMAIN"}, secretB,
			vault.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, s.AddCredential(tt.cred, []byte(tt.secret)), tt.want, tt.message)
		})
	}

	// The same env var in another vault is fine.
	if err := s.AddCredential(testCredential("prod", "shared", "SHARED_KEY"), []byte(secretB)); err != nil {
		t.Errorf("env used in another vault: %v", err)
	}
}

func testRemoveCredential(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	mustAdd(t, s, testCredential("prod", "b", "KEY_B"), secretB)
	if err := s.RemoveCredential("prod", "a"); err != nil {
		t.Fatal(err)
	}

	_, _, err := s.Secret("prod", "a")
	checkErr(t, err, vault.ErrNotFound, `vault "prod": credential "a": not found`)
	checkErr(t, s.RemoveCredential("prod", "a"), vault.ErrNotFound, "")
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

func testCredentialsSorted(t *testing.T, s vault.Store) {
	if err := s.CreateVault("empty"); err != nil {
		t.Fatal(err)
	}
	if creds, err := s.Credentials("empty"); err != nil || creds == nil || len(creds) != 0 {
		t.Errorf("Credentials of an empty vault = %#v, %v; want an empty, non-nil list", creds, err)
	}

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

// recorder collects the changes a store reports.
type recorder struct {
	mu      sync.Mutex
	changes []vault.Change
}

func (r *recorder) record(c vault.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

// take returns the changes recorded so far and forgets them.
func (r *recorder) take() []vault.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}

func testWatch(t *testing.T, s vault.Store) {
	var rec recorder
	cancel := s.Watch(rec.record)

	steps := []struct {
		name string
		op   func() error
		want vault.Change // Revision unchecked; zero Kind: no change
	}{
		{"create", func() error { return s.CreateVault("prod") },
			vault.Change{Kind: vault.ChangeCreate, Vault: "prod"}},
		{"add", func() error { return s.AddCredential(testCredential("prod", "a", "KEY_A"), []byte(secretA)) },
			vault.Change{Kind: vault.ChangeAdd, Vault: "prod", Credential: "a"}},
		{"refused add", func() error {
			err := s.AddCredential(testCredential("prod", "a", "KEY_A"), []byte(secretA))
			if !errors.Is(err, vault.ErrExists) {
				return fmt.Errorf("duplicate add: %v, want ErrExists", err)
			}
			return nil
		}, vault.Change{}},
		{"rotate", func() error { _, err := s.RotateCredential("prod", "a", []byte(secretB)); return err },
			vault.Change{Kind: vault.ChangeRotate, Vault: "prod", Credential: "a"}},
		{"add second", func() error { return s.AddCredential(testCredential("prod", "b", "KEY_B"), []byte(secretA)) },
			vault.Change{Kind: vault.ChangeAdd, Vault: "prod", Credential: "b"}},
		{"remove", func() error { return s.RemoveCredential("prod", "a") },
			vault.Change{Kind: vault.ChangeRemove, Vault: "prod", Credential: "a"}},
		{"archive", func() error { return s.ArchiveVault("prod") },
			vault.Change{Kind: vault.ChangeArchive, Vault: "prod"}},
	}
	var last int64
	for _, st := range steps {
		if err := st.op(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// The change is reported by the time the call returns.
		got := rec.take()
		if st.want.Kind == "" {
			if len(got) != 0 {
				t.Errorf("%s: reported %+v, want nothing", st.name, got)
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("%s: reported %+v, want one %s", st.name, got, st.want.Kind)
		}
		c := got[0]
		if c.Kind != st.want.Kind || c.Vault != st.want.Vault || c.Credential != st.want.Credential {
			t.Errorf("%s: reported %+v, want %+v", st.name, c, st.want)
		}
		if c.Revision <= last {
			t.Errorf("%s: revision %d, not after %d", st.name, c.Revision, last)
		}
		last = c.Revision
	}

	cancel()
	if err := s.CreateVault("later"); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("after cancel: reported %+v", got)
	}
}

// testConcurrentUse runs readers against rotations, additions and removals,
// with a watcher that reads the store from its callback (run with -race).
func testConcurrentUse(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	errs := make(chan error, 100)
	var (
		watchMu   sync.Mutex
		watchErrs []error
	)
	cancel := s.Watch(func(c vault.Change) {
		if c.Kind != vault.ChangeAdd && c.Kind != vault.ChangeRotate {
			return
		}
		if _, err := s.Credentials(c.Vault); err != nil {
			watchMu.Lock()
			watchErrs = append(watchErrs, err)
			watchMu.Unlock()
		}
	})

	var wg sync.WaitGroup
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
				if _, err := s.Credentials("prod"); err != nil {
					errs <- err
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
	// Two writers racing for the same vault: both additions must land,
	// however the engine serialises them.
	wg.Go(func() {
		for i := range 5 {
			c := testCredential("prod", fmt.Sprintf("race%d", i), fmt.Sprintf("RACE_%d", i))
			if err := s.AddCredential(c, []byte(secretA)); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	cancel()
	close(errs)
	watchMu.Lock()
	for _, err := range watchErrs {
		checkNoLeak(t, err)
		t.Errorf("read from a watcher: %v", err)
	}
	watchMu.Unlock()
	for err := range errs {
		checkNoLeak(t, err)
		t.Error(err)
	}

	creds, err := s.Credentials("prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 6 {
		t.Errorf("after the race: %d credentials, want 6 (a and race0-4)", len(creds))
	}
	if c, err := s.Credential("prod", "a"); err != nil || c.Version != 11 {
		t.Errorf("after 10 rotations: %+v, %v; want version 11", c, err)
	}
}

func testClose(t *testing.T, s vault.Store) {
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Vaults(); err == nil {
		t.Error("Vaults after Close succeeded")
	}
	if _, _, err := s.Secret("prod", "a"); err == nil {
		t.Error("Secret after Close succeeded")
	}
	if err := s.CreateVault("x"); err == nil {
		t.Error("CreateVault after Close succeeded")
	}
}
