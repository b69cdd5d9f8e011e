// Package etcdtest runs etcd clusters for tests: real etcd server
// processes on loopback, on free ports, with their data in the test's
// temporary directory, that a test can stop, kill and restart member by
// member.
//
// Tests that use it skip when there is no etcd binary, or fail under
// KEYGATE_REQUIRE_ROOT (testutil.RequireEtcd).
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/testutil"
)

// startTimeout bounds the wait for a cluster, or a restarted member, to
// serve.
const startTimeout = 30 * time.Second

// Cluster is a running etcd cluster; its members stop when the test ends.
type Cluster struct {
	Members []*Member
	TLS     *TLSFiles // nil unless started by StartTLS
	t       testing.TB
}

// Member is one etcd server process of a Cluster.
type Member struct {
	Name      string
	DataDir   string
	ClientURL string // http://127.0.0.1:PORT
	PeerURL   string

	bin     string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited
}

// Start starts an n-member cluster and waits until every member serves.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, false)
}

// StartTLS is Start for a cluster whose clients must use TLS and present a
// certificate signed by the cluster's CA; c.TLS names the files.
func StartTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, true)
}

func start(t testing.TB, n int, withTLS bool) *Cluster {
	t.Helper()
	bin := testutil.RequireEtcd(t)
	dir := t.TempDir()
	token := fmt.Sprintf("keygate-test-%d", time.Now().UnixNano())

	c := &Cluster{t: t}
	scheme := "http"
	if withTLS {
		c.TLS = writeTLSFiles(t, dir)
		scheme = "https"
	}
	var initial []string
	ports := freePorts(t, 2*n)
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			DataDir:   filepath.Join(dir, fmt.Sprintf("m%d", i)),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			bin:       bin,
			logPath:   filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// etcd's defaults, spelled out: shorter timeouts elect faster
			// but flap on a loaded two-core machine under -race.
			"--heartbeat-interval", "100",
			"--election-timeout", "1000",
		}
		if c.TLS != nil {
			m.args = append(m.args,
				"--cert-file", c.TLS.ServerCert, "--key-file", c.TLS.ServerKey,
				"--trusted-ca-file", c.TLS.CAFile, "--client-cert-auth")
		}
	}

	t.Cleanup(c.stopAll)
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			t.Fatalf("start etcd %s: %v", m.Name, err)
		}
	}
	for _, m := range c.Members {
		c.WaitHealthy(m)
	}
	return c
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli := c.client(c.Endpoints(), 5*time.Second)
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// client returns a client of endpoints, with the cluster's TLS if any.
func (c *Cluster) client(endpoints []string, dialTimeout time.Duration) *clientv3.Client {
	c.t.Helper()
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout, Logger: zap.NewNop()}
	if c.TLS != nil {
		cfg.TLS = c.TLS.clientConfig(c.t)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return cli
}

// WaitHealthy waits until m answers a linearizable read, which needs it to
// be part of a quorum with a leader.
func (c *Cluster) WaitHealthy(m *Member) {
	c.t.Helper()
	cli := c.client([]string{m.ClientURL}, time.Second)
	defer cli.Close()

	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd %s not healthy after %v: %v\n%s", m.Name, startTimeout, err, m.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends m with SIGKILL, as a crash would, and waits for it to exit.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Stop ends m with SIGTERM and waits for it to exit.
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

// Restart starts a stopped member again on its data directory and ports,
// and waits until it serves.
func (c *Cluster) Restart(m *Member) {
	c.t.Helper()
	if err := m.start(); err != nil {
		c.t.Fatalf("restart etcd %s: %v", m.Name, err)
	}
	c.WaitHealthy(m)
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("already running")
	}
	log, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

// signal sends sig to a running member and waits for it to exit, killing
// it if it takes longer than ten seconds.
func (m *Member) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// logTail returns the end of m's log, for a failure message.
func (m *Member) logTail() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(bytes.TrimSpace(b))
}

// freePorts returns n loopback ports that were free a moment ago. They are
// all held open until all are found, so the n are distinct.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
