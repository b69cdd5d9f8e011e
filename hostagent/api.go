//go:build linux

package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/vault"
)

// maxBody bounds control API request bodies.
const maxBody = 1 << 20

type peerKey struct{}

// startAPI serves the control API on the unix socket, readable and
// writable by root only.
func (a *Agent) startAPI() error {
	if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
		return err
	}
	os.Remove(a.cfg.Socket) // a stale socket from an agent that did not stop cleanly
	ln, err := net.Listen("unix", a.cfg.Socket)
	if err != nil {
		return err
	}
	if err := a.secureSocket(); err != nil {
		ln.Close()
		return err
	}
	a.listeners = append(a.listeners, ln)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/vaults", a.handleCreateVault)
	mux.HandleFunc("GET /v1/vaults", a.handleListVaults)
	mux.HandleFunc("POST /v1/vaults/{vault}/archive", a.handleArchiveVault)
	mux.HandleFunc("POST /v1/vaults/{vault}/credentials", a.handleAddCredential)
	mux.HandleFunc("GET /v1/vaults/{vault}/credentials", a.handleListCredentials)
	mux.HandleFunc("PUT /v1/vaults/{vault}/credentials/{name}/secret", a.handleRotate)
	mux.HandleFunc("DELETE /v1/vaults/{vault}/credentials/{name}", a.handleRemoveCredential)
	mux.HandleFunc("GET /v1/sandboxes", a.handleListSandboxes)
	mux.HandleFunc("POST /v1/sandboxes", a.handleCreateSandbox)
	mux.HandleFunc("DELETE /v1/sandboxes/{id}", a.handleRemoveSandbox)
	mux.HandleFunc("GET /v1/sandboxes/{id}/wait", a.handleWait)
	mux.HandleFunc("POST /v1/sandboxes/{id}/exec", a.handleExec)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	a.registerSchedules(mux)
	mux.HandleFunc("GET /v1/audit", a.handleAudit)
	mux.HandleFunc("POST /v1/audit/verify", a.handleAuditVerify)
	mux.HandleFunc("POST /v1/run", a.handleRun)

	a.api = &http.Server{
		Handler:     a.authorize(mux),
		ConnContext: peerContext,
		ErrorLog:    nil,
	}
	go a.api.Serve(ln)
	return nil
}

// peerContext records the connecting process's credentials.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// secureSocket makes the socket readable and writable by root and, if
// configured, the API group: the file mode is the first check, the peer
// credentials (authorize) the second.
func (a *Agent) secureSocket() error {
	if a.cfg.APIGroup != nil {
		if err := os.Chown(a.cfg.Socket, 0, int(*a.cfg.APIGroup)); err != nil {
			return fmt.Errorf("socket group: %w", err)
		}
	}
	return os.Chmod(a.cfg.Socket, 0o660)
}

// authorize admits callers that are root or, if an API group is
// configured, members of it (by primary or supplementary group), whatever
// the socket's file mode allows.
func (a *Agent) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
		if cred == nil || !a.admits(cred) {
			msg := "the control API is for root only"
			if a.cfg.APIGroup != nil {
				msg = fmt.Sprintf("the control API is for root and group %d only", *a.cfg.APIGroup)
			}
			writeError(w, http.StatusForbidden, errors.New(msg))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Agent) admits(cred *unix.Ucred) bool {
	if cred.Uid == 0 {
		return true
	}
	if a.cfg.APIGroup == nil {
		return false
	}
	gid := *a.cfg.APIGroup
	if cred.Gid == gid {
		return true
	}
	groups, err := procGroups(cred.Pid)
	return err == nil && slices.Contains(groups, gid)
}

// procGroups reads a process's supplementary groups from /proc. The peer
// could exit and its pid be reused between connect and this read; the
// socket's file mode already limited who could connect, so the worst case
// is a refusal, or admitting a process that could open the socket anyway.
func procGroups(pid int32) ([]uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range strings.Fields(rest) {
			if g, err := strconv.ParseUint(f, 10, 32); err == nil {
				out = append(out, uint32(g))
			}
		}
		return out, nil
	}
	return nil, errors.New("no Groups line")
}

func (a *Agent) handleCreateVault(w http.ResponseWriter, r *http.Request) {
	var req api.CreateVaultRequest
	if !decode(w, r, &req) {
		return
	}
	if err := a.storeOp("vault.create", a.store.CreateVault(req.Name)); err != nil {
		writeStoreError(w, err)
		return
	}
	a.log.Info("vault created", "vault", req.Name)
	if err := a.auditChange(r, audit.Record{Kind: audit.KindVaultCreate, Vault: req.Name}); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	info, err := a.store.Vault(req.Name)
	respond(w, http.StatusCreated, info, err)
}

func (a *Agent) handleListVaults(w http.ResponseWriter, r *http.Request) {
	vs, err := a.store.Vaults()
	respond(w, http.StatusOK, vs, err)
}

func (a *Agent) handleArchiveVault(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vault")
	err := a.storeOp("vault.archive", a.store.ArchiveVault(name))
	a.creds.forget(name, "")
	if err != nil {
		writeStoreError(w, err)
		return
	}
	a.log.Info("vault archived", "vault", name)
	rec := audit.Record{Kind: audit.KindVaultArchive, Vault: name, Detail: "secrets purged"}
	if err := a.auditChange(r, rec); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	info, err := a.store.Vault(name)
	respond(w, http.StatusOK, info, err)
}

func (a *Agent) handleAddCredential(w http.ResponseWriter, r *http.Request) {
	var req api.AddCredentialRequest
	if !decode(w, r, &req) {
		return
	}
	defer clear(req.Secret)
	c := vault.Credential{
		Vault: r.PathValue("vault"), Name: req.Name, Env: req.Env,
		Domains: req.Domains, Header: req.Header, Prefix: req.PlaceholderPrefix, Query: req.Query,
	}
	if err := a.storeOp("credential.add", a.store.AddCredential(c, req.Secret)); err != nil {
		writeStoreError(w, err)
		return
	}
	a.log.Info("credential added", "vault", c.Vault, "credential", c.Name, "domains", c.Domains)
	rec := audit.Record{
		Kind: audit.KindCredentialAdd, Vault: c.Vault, Credential: c.Name,
		Detail: "env " + c.Env + ", domains " + strings.Join(c.Domains, ","),
	}
	if err := a.auditChange(r, rec); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	cred, err := a.store.Credential(c.Vault, c.Name)
	respond(w, http.StatusCreated, cred, err)
}

func (a *Agent) handleListCredentials(w http.ResponseWriter, r *http.Request) {
	cs, err := a.store.Credentials(r.PathValue("vault"))
	respond(w, http.StatusOK, cs, err)
}

func (a *Agent) handleRotate(w http.ResponseWriter, r *http.Request) {
	var req api.RotateRequest
	if !decode(w, r, &req) {
		return
	}
	defer clear(req.Secret)
	v, name := r.PathValue("vault"), r.PathValue("name")
	cred, err := a.store.RotateCredential(v, name, req.Secret)
	a.storeOp("credential.rotate", err)
	a.creds.invalidate() // before answering: the next request must read the new secret
	if err != nil {
		writeStoreError(w, err)
		return
	}
	a.log.Info("credential rotated", "vault", v, "credential", name, "version", cred.Version)
	rec := audit.Record{
		Kind: audit.KindCredentialRotate, Vault: v, Credential: name,
		Detail: "version " + strconv.FormatUint(cred.Version, 10),
	}
	if err := a.auditChange(r, rec); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	respond(w, http.StatusOK, cred, nil)
}

func (a *Agent) handleRemoveCredential(w http.ResponseWriter, r *http.Request) {
	v, name := r.PathValue("vault"), r.PathValue("name")
	err := a.storeOp("credential.remove", a.store.RemoveCredential(v, name))
	a.creds.forget(v, name)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	a.log.Info("credential removed", "vault", v, "credential", name)
	rec := audit.Record{Kind: audit.KindCredentialRemove, Vault: v, Credential: name, Detail: "secret purged"}
	if err := a.auditChange(r, rec); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAudit returns the audit records matching the query parameters
// vault, since (RFC 3339), kind (repeatable) and limit.
func (a *Agent) handleAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{Vault: q.Get("vault")}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("since %q: want an RFC 3339 time", s))
			return
		}
		f.Since = t
	}
	for _, k := range q["kind"] {
		f.Kinds = append(f.Kinds, audit.Kind(k))
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a count", s))
			return
		}
		f.Limit = n
	}
	recs, err := a.audit.Query(f)
	if recs == nil {
		recs = []audit.Record{}
	}
	respond(w, http.StatusOK, recs, err)
}

// handleAuditVerify checks the whole chain. A log that does not verify is
// a successful call with a report that says so; only I/O errors fail.
func (a *Agent) handleAuditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := a.audit.Verify()
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("verify audit log: %w", err))
		return
	}
	respond(w, http.StatusOK, rep, nil)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("malformed request body: %v", err))
		return false
	}
	return true
}

func respond(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeStoreError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeStoreError maps an error to its HTTP status: the one place that
// decides how store and validation failures look to API clients.
func writeStoreError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, vault.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, vault.ErrExists), errors.Is(err, vault.ErrArchived), errors.Is(err, vault.ErrLimit):
		status = http.StatusConflict
	case errors.Is(err, vault.ErrInvalid), errors.Is(err, errUnsupported):
		status = http.StatusBadRequest
	}
	writeError(w, status, err)
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
}

// storeOp counts a store change by result and passes its error on.
func (a *Agent) storeOp(op string, err error) error {
	result := "ok"
	if err != nil {
		result = "error"
	}
	a.metrics.StoreOps.WithLabelValues(op, result).Inc()
	return err
}
