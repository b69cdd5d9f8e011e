//go:build linux

package hostagent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/jail"
	"github.com/keygate/keygate/pkg/vault"
)

// sandboxHome is the sandbox user's home, on a private tmpfs.
const sandboxHome = "/home/sandbox"

// systemBundles are where distributions keep the system trust bundle; the
// first that exists on the host is shown to sandboxes as keygate's bundle.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/cert.pem",
}

// caEnvVars point common TLS stacks at the sandbox's trust bundle.
var caEnvVars = []string{
	"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
	"NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE",
}

// handleRun runs a command in a new sandbox. The request is checked first
// and refused with an ordinary error; then the connection is upgraded, the
// caller passes its stdio descriptors over the socket, and the agent
// streams events until the command exits. If the caller goes away, the
// sandbox is ended.
func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Argv) == 0 {
		writeStoreError(w, fmt.Errorf("%w: no command given", vault.ErrInvalid))
		return
	}
	plan, err := a.plan(req.SandboxSpec)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	a.serveStream(w, "run", func(stdio []*os.File, conn *net.UnixConn, enc *json.Encoder) (int, error) {
		return a.run(plan, req, stdio, conn, enc)
	})
}

// serveStream switches w's connection to the run protocol, receives the
// caller's stdio and streams the outcome of fn: an exit event with its
// status, or an error event.
func (a *Agent) serveStream(w http.ResponseWriter, what string,
	fn func(stdio []*os.File, conn *net.UnixConn, enc *json.Encoder) (int, error)) {
	conn, stdio, err := upgradeRun(w)
	if err != nil {
		a.log.Warn(what+" upgrade failed", "err", err)
		return
	}
	defer conn.Close()
	defer closeAll(stdio)

	a.runs.Add(1)
	defer a.runs.Done()
	enc := json.NewEncoder(conn)
	code, err := fn(stdio, conn, enc)
	if err != nil {
		enc.Encode(api.RunEvent{Event: "error", Error: err.Error()})
		return
	}
	enc.Encode(api.RunEvent{Event: "exit", ExitCode: code})
}

// upgradeRun switches the connection to the run protocol and receives the
// caller's stdin, stdout and stderr.
func upgradeRun(w http.ResponseWriter) (*net.UnixConn, []*os.File, error) {
	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn, ok := raw.(*net.UnixConn)
	if !ok || brw.Reader.Buffered() > 0 {
		raw.Close()
		return nil, nil, errors.New("run: unexpected connection state")
	}
	conn.SetDeadline(time.Time{})
	fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", api.RunUpgrade)

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("receive stdio: %w", err)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil || len(fds) != 3 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		conn.Close()
		return nil, nil, fmt.Errorf("receive stdio: want 3 descriptors, got %d (%v)", len(fds), err)
	}
	return conn, stdioFiles(fds), nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// run creates the sandbox, starts the command and waits for it, the
// caller's disconnect, or the agent's shutdown.
func (a *Agent) run(plan *sandboxPlan, req api.RunRequest, stdio []*os.File, conn *net.UnixConn, enc *json.Encoder) (int, error) {
	sb, err := a.createSandbox(plan, false)
	if err != nil {
		return 0, err
	}
	sb.mu.Lock()
	sb.attached = true
	sb.mu.Unlock()
	if err := a.startSandbox(sb, req.Argv, req.Env, req.Dir, stdio); err != nil {
		a.teardown(sb)
		return 0, err
	}
	closeAll(stdio) // the sandbox holds its own copies now
	enc.Encode(api.RunEvent{Event: "started", Sandbox: sb.id})
	return a.follow(sb, conn), nil
}

// follow waits for a sandbox to exit while its caller stays connected on
// conn, and returns the exit status. If the caller goes away or the agent
// stops first, the sandbox is ended.
func (a *Agent) follow(sb *sandbox, conn net.Conn) int {
	gone := make(chan struct{})
	go func() {
		// The caller sends nothing after its request: any return from
		// Read means it closed the connection or died.
		bufio.NewReader(conn).ReadByte()
		close(gone)
	}()
	select {
	case <-sb.done:
	case <-gone:
		a.log.Info("caller went away; ending sandbox", "sandbox", sb.id)
		sb.cgroup.Kill()
		<-sb.done
	case <-a.stop:
		a.log.Info("agent stopping; ending sandbox", "sandbox", sb.id)
		sb.cgroup.Kill()
		<-sb.done
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.exitCode
}

// spec describes the command's jail: the host's file system read-only, the
// agent's state and socket hidden, keygate's CA bundle and resolv.conf
// shown in place of the host's.
// A nil argv makes the init of a persistent sandbox.
func (a *Agent) spec(sb *sandbox, argv, callerEnv []string, dir string) *jail.Spec {
	env, binds := a.sandboxEnv(sb, callerEnv)
	return &jail.Spec{
		Argv:       argv,
		Env:        env,
		Dir:        dir,
		Home:       sandboxHome,
		UID:        a.cfg.SandboxUID,
		GID:        a.cfg.SandboxUID,
		Hostname:   "keygate-" + sb.id,
		Hide:       []string{a.cfg.StateDir, a.cfg.Socket},
		Binds:      binds,
		Persistent: argv == nil,
	}
}

// sandboxEnv returns the environment of a sandbox's commands — a fixed
// base, the caller's allowlisted variables, the trust-store variables and
// the placeholders — and the file binds that make the CA bundle and
// resolv.conf appear at their usual paths.
func (a *Agent) sandboxEnv(sb *sandbox, callerEnv []string) ([]string, []jail.Bind) {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + sandboxHome,
		"USER=sandbox",
		"KEYGATE_SANDBOX=" + sb.id,
	}
	env = append(env, callerEnv...)

	var binds []jail.Bind
	bundle := ""
	for _, p := range systemBundles {
		if _, err := os.Stat(p); err == nil {
			binds = append(binds, jail.Bind{Src: a.bundle, Dst: p})
			bundle = p
			break
		}
	}
	if bundle != "" {
		for _, v := range caEnvVars {
			env = append(env, v+"="+bundle)
		}
	}
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		binds = append(binds, jail.Bind{Src: a.resolv, Dst: "/etc/resolv.conf"})
	}
	env = append(env, sb.env...)
	return env, binds
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
