package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

func runCred(e *env, args []string) (int, error) {
	if len(args) == 0 {
		return ExitUsage, usageError("cred: want add, rotate, rm or list")
	}
	switch args[0] {
	case "add":
		return credAdd(e, args[1:])
	case "rotate":
		return credRotate(e, args[1:])
	case "rm":
		return credRemove(e, args[1:])
	case "list":
		return credList(e, args[1:])
	}
	return ExitUsage, usageError("cred: unknown subcommand %q", args[0])
}

func credPath(v, name string) string {
	p := "/v1/vaults/" + url.PathEscape(v) + "/credentials"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

func credAdd(e *env, args []string) (int, error) {
	fs := newFlagSet("cred add", "cred add VAULT NAME --env VAR --domain D [--domain D]... [--header 'Name: fmt {}'] [--placeholder-prefix P] [--query] [--secret-file F]  (secret on stdin)", e.stdout)
	envVar := fs.String("env", "", "environment variable the sandbox reads the key from (required)")
	var domains stringList
	fs.Var(&domains, "domain", "approved domain: a host name, *.suffix (one label) or **.suffix (any depth); repeatable (required)")
	header := fs.String("header", "", "set this header from a template on approved hosts, even if the client sent none, e.g. 'X-Api-Key: {}'")
	prefix := fs.String("placeholder-prefix", "", "start placeholders with this, for SDKs that check a key's shape (e.g. sk-)")
	query := fs.Bool("query", false, "also substitute the placeholder in query strings (off: refused there)")
	secretFile := fs.String("secret-file", "", "read the secret from this file instead of stdin")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 2 || *envVar == "" || len(domains) == 0 {
		return ExitUsage, usageError("cred add: want VAULT NAME --env VAR --domain D")
	}
	secret, err := readSecret(e, *secretFile)
	if err != nil {
		return ExitFailure, err
	}
	req := api.AddCredentialRequest{Name: pos[1], Env: *envVar, Domains: domains, Header: *header,
		PlaceholderPrefix: *prefix, Query: *query, Secret: secret}
	var c api.Credential
	if err := e.client.Do(e.ctx, http.MethodPost, credPath(pos[0], ""), req, &c); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "credential %s/%s added (env %s, domains %s)\n", pos[0], c.Name, c.Env, joinOr(c.Domains, "-"))
	return ExitOK, nil
}

func credRotate(e *env, args []string) (int, error) {
	fs := newFlagSet("cred rotate", "cred rotate VAULT NAME [--secret-file F]  (new secret on stdin)", e.stdout)
	secretFile := fs.String("secret-file", "", "read the new secret from this file instead of stdin")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 2 {
		return ExitUsage, usageError("cred rotate: want VAULT NAME")
	}
	secret, err := readSecret(e, *secretFile)
	if err != nil {
		return ExitFailure, err
	}
	var c api.Credential
	if err := e.client.Do(e.ctx, http.MethodPut, credPath(pos[0], pos[1])+"/secret", api.RotateRequest{Secret: secret}, &c); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "credential %s/%s rotated (version %d); the next request uses the new secret\n", pos[0], c.Name, c.Version)
	return ExitOK, nil
}

func credRemove(e *env, args []string) (int, error) {
	fs := newFlagSet("cred rm", "cred rm VAULT NAME", e.stdout)
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 2 {
		return ExitUsage, usageError("cred rm: want VAULT NAME")
	}
	if err := e.client.Do(e.ctx, http.MethodDelete, credPath(pos[0], pos[1]), nil, nil); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "credential %s/%s removed\n", pos[0], pos[1])
	return ExitOK, nil
}

func credList(e *env, args []string) (int, error) {
	fs := newFlagSet("cred list", "cred list VAULT [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 1 {
		return ExitUsage, usageError("cred list: want VAULT")
	}
	var cs []api.Credential
	if err := e.client.Do(e.ctx, http.MethodGet, credPath(pos[0], ""), nil, &cs); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, cs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENV\tDOMAINS\tVERSION\tUPDATED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", c.Name, c.Env, joinOr(c.Domains, "-"), c.Version, c.Updated.Format(time.RFC3339))
	}
	return ExitOK, tw.Flush()
}
