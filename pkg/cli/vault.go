package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

func runVault(e *env, args []string) (int, error) {
	if len(args) == 0 {
		return ExitUsage, usageError("vault: want create, list or archive")
	}
	switch args[0] {
	case "create":
		return vaultCreate(e, args[1:])
	case "list":
		return vaultList(e, args[1:])
	case "archive":
		return vaultArchive(e, args[1:])
	}
	return ExitUsage, usageError("vault: unknown subcommand %q", args[0])
}

func vaultCreate(e *env, args []string) (int, error) {
	fs := newFlagSet("vault create", "vault create NAME", e.stdout)
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 1 {
		return ExitUsage, usageError("vault create: want exactly one NAME")
	}
	var v api.Vault
	if err := e.client.Do(e.ctx, http.MethodPost, "/v1/vaults", api.CreateVaultRequest{Name: pos[0]}, &v); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "vault %s created\n", v.Name)
	return ExitOK, nil
}

func vaultList(e *env, args []string) (int, error) {
	fs := newFlagSet("vault list", "vault list [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, _, err := parse(fs, args); err != nil {
		return ExitUsage, err
	}
	var vs []api.Vault
	if err := e.client.Do(e.ctx, http.MethodGet, "/v1/vaults", nil, &vs); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, vs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCREDENTIALS\tCREATED")
	for _, v := range vs {
		state := "active"
		if v.Archived {
			state = "archived"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Name, state, v.Credentials, v.Created.Format(time.RFC3339))
	}
	return ExitOK, tw.Flush()
}

func vaultArchive(e *env, args []string) (int, error) {
	fs := newFlagSet("vault archive", "vault archive NAME", e.stdout)
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 1 {
		return ExitUsage, usageError("vault archive: want exactly one NAME")
	}
	path := "/v1/vaults/" + url.PathEscape(pos[0]) + "/archive"
	if err := e.client.Do(e.ctx, http.MethodPost, path, nil, nil); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "vault %s archived: its secrets are purged, its audit records kept\n", pos[0])
	return ExitOK, nil
}

func joinOr(xs []string, empty string) string {
	if len(xs) == 0 {
		return empty
	}
	return strings.Join(xs, ",")
}
