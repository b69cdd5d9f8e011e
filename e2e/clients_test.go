//go:build linux

package e2e

import (
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"
)

// TestRealClients runs the tools agents use, unchanged and with no proxy
// settings, inside sandboxes: each reads its usual environment variable,
// which holds only a placeholder, and the test world's API records the
// real key. Python and Node trust keygate's CA through the variables
// keygate sets (REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS), nothing else.
func TestRealClients(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	api := w.APIHost()
	keys := map[string]string{}
	a.mustKG("", "vault", "create", "tools")
	add := func(name, env string, extra ...string) string {
		k := secret(t)
		keys[name] = k
		args := append([]string{"cred", "add", "tools", name, "--env", env, "--domain", api}, extra...)
		a.mustKG(k+"\n", args...)
		return k
	}
	add("curl", "CURL_TOKEN")
	add("openai", "OPENAI_API_KEY", "--placeholder-prefix", "sk-")
	add("node", "NODE_TOKEN")
	add("gh", "GH_ENTERPRISE_TOKEN")
	add("git", "GIT_TOKEN")
	add("sentry", "SENTRY_AUTH_TOKEN")

	// lastHeader returns the named header of the API's latest request
	// whose path starts with prefix.
	lastHeader := func(t *testing.T, prefix, header string) string {
		t.Helper()
		reqs := w.Requests(api)
		for i := len(reqs) - 1; i >= 0; i-- {
			if strings.HasPrefix(reqs[i].Path, prefix) {
				return reqs[i].Header.Get(header)
			}
		}
		t.Fatalf("the API received no request under %s", prefix)
		return ""
	}
	var outputs []string
	run := func(t *testing.T, tool, script string) string {
		t.Helper()
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", tool)
		}
		out, errOut, code := a.run([]string{"--vault", "tools"}, script)
		outputs = append(outputs, out, errOut)
		if code != 0 {
			t.Fatalf("%s: exit %d\nstdout %s\nstderr %s", tool, code, out, errOut)
		}
		return out
	}

	t.Run("curl", func(t *testing.T) {
		run(t, "curl", `curl -sSf -m 10 -o /dev/null https://`+api+`/curl -H "Authorization: Bearer $CURL_TOKEN"`)
		if got := lastHeader(t, "/curl", "Authorization"); got != "Bearer "+keys["curl"] {
			t.Fatalf("Authorization %q", redact(got, keys["curl"]))
		}
	})

	t.Run("python requests", func(t *testing.T) {
		out := run(t, "python3", `python3 -c '
import os, requests
r = requests.get("https://`+api+`/python/v1/models", headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}, timeout=10)
print(r.status_code)'`)
		if strings.TrimSpace(out) != "200" {
			t.Fatalf("requests: %q", out)
		}
		if got := lastHeader(t, "/python", "Authorization"); got != "Bearer "+keys["openai"] {
			t.Fatalf("Authorization %q", redact(got, keys["openai"]))
		}
	})

	t.Run("node fetch", func(t *testing.T) {
		out := run(t, "node", `node -e '
fetch("https://`+api+`/node", {headers: {Authorization: "Bearer " + process.env.NODE_TOKEN}})
  .then(r => console.log(r.status)).catch(e => { console.error(e.cause || e); process.exit(1) })'`)
		if strings.TrimSpace(out) != "200" {
			t.Fatalf("fetch: %q", out)
		}
		if got := lastHeader(t, "/node", "Authorization"); got != "Bearer "+keys["node"] {
			t.Fatalf("Authorization %q", redact(got, keys["node"]))
		}
	})

	t.Run("gh", func(t *testing.T) {
		// An Enterprise host: gh sends GH_ENTERPRISE_TOKEN to
		// https://HOST/api/v3/.
		run(t, "gh", `GH_HOST=`+api+` GH_PROMPT_DISABLED=1 gh api /user >/dev/null`)
		if got := lastHeader(t, "/api/v3/user", "Authorization"); got != "token "+keys["gh"] {
			t.Fatalf("Authorization %q", redact(got, keys["gh"]))
		}
	})

	t.Run("git over HTTPS", func(t *testing.T) {
		// A credential helper hands git the token from the environment,
		// the way CI systems do; git answers the server's 401 with Basic.
		out := run(t, "git", `git -c credential.helper='!f() { echo username=x-access-token; echo "password=$GIT_TOKEN"; }; f' `+
			`ls-remote https://`+api+`/_kg/git/org/repo.git`)
		if !strings.Contains(out, "refs/heads/main") {
			t.Fatalf("ls-remote: %q", out)
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+keys["git"]))
		if got := lastHeader(t, "/_kg/git/", "Authorization"); got != want {
			t.Fatalf("git sent %q, want Basic of the real token", got)
		}
	})

	t.Run("sentry-cli", func(t *testing.T) {
		run(t, "sentry-cli", `sentry-cli --url https://`+api+`/ info >/dev/null 2>&1 || true`)
		if got := lastHeader(t, "/api/0/", "Authorization"); got != "Bearer "+keys["sentry"] {
			t.Fatalf("Authorization %q", redact(got, keys["sentry"]))
		}
	})

	a.stop()
	outputs = append(outputs, a.log.String())
	for name, k := range keys {
		for _, o := range outputs {
			if strings.Contains(o, k) {
				t.Errorf("the %s secret appeared in output: %s", name, redact(o, k))
			}
		}
	}
}
