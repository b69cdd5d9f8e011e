// Package api defines keygate's control API — versioned JSON over the
// agent's unix socket — and a client for it. Request and response bodies
// never carry a secret except the one in a credential's add or rotate
// request, which travels only agent-ward.
package api

import (
	"time"

	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/vault"
)

// DefaultSocket is where keygated listens and keygate looks by default.
const DefaultSocket = "/run/keygate/keygate.sock"

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "KEYGATE_SOCKET"

// Vault and Credential are the vault package's metadata types; neither has
// a field for the secret. AuditRecord and AuditReport are the audit log's
// record and verification report (GET /v1/audit, POST /v1/audit/verify).
type (
	Vault       = vault.Info
	Credential  = vault.Credential
	AuditRecord = audit.Record
	AuditReport = audit.Report
)

// CreateVaultRequest is the body of POST /v1/vaults.
type CreateVaultRequest struct {
	Name string `json:"name"`
}

// AddCredentialRequest is the body of POST /v1/vaults/{vault}/credentials.
type AddCredentialRequest struct {
	Name    string   `json:"name"`
	Env     string   `json:"env"`
	Domains []string `json:"domains"`
	Header  string   `json:"header,omitempty"`
	// PlaceholderPrefix starts the credential's placeholders ("sk-").
	PlaceholderPrefix string `json:"placeholder_prefix,omitempty"`
	// Query allows substitution in query strings.
	Query  bool   `json:"query,omitempty"`
	Secret []byte `json:"secret"`
}

// RotateRequest is the body of PUT /v1/vaults/{vault}/credentials/{name}/secret.
type RotateRequest struct {
	Secret []byte `json:"secret"`
}

// SandboxSpec is what a sandbox is made of: the vaults whose credentials
// it gets placeholders for, the extra domains it may reach, and how it
// runs and is captured. Empty Runtime, Capture and Mode take the defaults
// (native; cgroup for native, tc for runsc; allowlist).
type SandboxSpec struct {
	Vaults  []string `json:"vaults"`
	Allow   []string `json:"allow"`
	Runtime string   `json:"runtime"`
	Capture string   `json:"capture"`
	// Mode is "allowlist" (only the credentials' domains and Allow) or
	// "open" (any public destination; credentials still only on their
	// approved domains).
	Mode string `json:"mode,omitempty"`
	// Rootfs is the root directory a runsc sandbox sees, read-only; ""
	// means the host's root.
	Rootfs string `json:"rootfs,omitempty"`
	// Passthrough domains are allowed, like Allow, and their TLS is never
	// terminated, for clients that pin certificates: keygate checks the
	// server name and the DNS pin, then relays the bytes. No credential is
	// attached there, nor can a placeholder sent there be seen. A domain
	// one of the sandbox's credentials is approved for is terminated
	// still.
	Passthrough []string `json:"passthrough,omitempty"`
}

// RunRequest is the body of POST /v1/run. The connection is then upgraded:
// the client passes its stdin, stdout and stderr with SCM_RIGHTS and reads
// RunEvents, one JSON object per line, until the exit event.
type RunRequest struct {
	SandboxSpec
	Argv []string `json:"argv"`
	Env  []string `json:"env"` // KEY=VALUE from the caller's allowlisted variables
	Dir  string   `json:"dir"`
}

// ExecRequest is the body of POST /v1/sandboxes/{id}/exec, upgraded like
// a run.
type ExecRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// RunEvent reports progress of a run.
type RunEvent struct {
	Event    string `json:"event"` // "started", "exit" or "error"
	Sandbox  string `json:"sandbox,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
}

// WaitResponse is the answer to GET /v1/sandboxes/{id}/wait: the exit
// status of the sandbox's command (or of its init, for a persistent one).
type WaitResponse struct {
	Sandbox  string `json:"sandbox"`
	ExitCode int    `json:"exit_code"`
}

// Sandbox describes a live sandbox.
type Sandbox struct {
	ID       string   `json:"id"`
	Address  string   `json:"address"`
	Address6 string   `json:"address6,omitempty"`
	Vaults   []string `json:"vaults"`
	Allow    []string `json:"allow"`
	// Passthrough lists the allowed domains relayed without TLS
	// termination (SandboxSpec.Passthrough).
	Passthrough []string     `json:"passthrough,omitempty"`
	Runtime     string       `json:"runtime"`
	Capture     string       `json:"capture"`
	Mode        string       `json:"mode"`
	Persistent  bool         `json:"persistent"` // made by sandbox create; else by run
	Created     time.Time    `json:"created"`
	Stats       SandboxStats `json:"stats"`
}

// SandboxStats counts what a sandbox's traffic led to.
type SandboxStats struct {
	Requests  uint64 `json:"requests"`   // proxy decisions: requests and refused connections
	Injected  uint64 `json:"injected"`   // requests that carried a secret
	Denied    uint64 `json:"denied"`     // requests and connections refused
	Spliced   uint64 `json:"spliced"`    // connections relayed without termination
	DNSDenied uint64 `json:"dns_denied"` // lookups refused
	// CaptureDenied counts what the capture programs refused in the
	// kernel: non-DNS UDP, ICMP, stray packets, spoofed sources.
	CaptureDenied uint64 `json:"capture_denied"`
}

// Status is the answer to GET /v1/status.
type Status struct {
	Version       string    `json:"version"`
	Store         string    `json:"store"` // engine: bolt or etcd
	Started       time.Time `json:"started"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Sandboxes     int       `json:"sandboxes"`
	AddressLeases int       `json:"address_leases"` // sandbox address blocks in use
	Denials       uint64    `json:"denials"`        // since start
	RecentDenials []Denial  `json:"recent_denials"`
	MetricsAddr   string    `json:"metrics_addr,omitempty"`
}

// Denial is one refused request, connection or lookup.
type Denial struct {
	Time    time.Time `json:"time"`
	Sandbox string    `json:"sandbox"`
	Kind    string    `json:"kind"` // request or dns
	Host    string    `json:"host"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail,omitempty"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// RunUpgrade is the Upgrade token of the run protocol.
const RunUpgrade = "keygate-run"
