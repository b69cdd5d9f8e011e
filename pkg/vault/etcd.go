package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Defaults for EtcdConfig.
const (
	DefaultEtcdPrefix      = "/keygate/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdGrace       = 30 * time.Second
)

// etcdRequestTimeout bounds a write, retries during a leader election
// included, with the wait for this host's view to show it; and one read.
// etcd itself gives up on a proposal after about 5 s plus two election
// timeouts.
const etcdRequestTimeout = 10 * time.Second

// Keys of the engine's structured log records.
const (
	logSubsystem = "subsystem"
	logRevision  = "revision"
	logKey       = "key"
	logError     = "err"
	logMember    = "member"
)

// EtcdConfig says how to reach the etcd cluster a fleet shares.
type EtcdConfig struct {
	// Endpoints are the cluster's client addresses, "host:port" or URLs.
	// List several: the client fails over between them.
	Endpoints []string

	// Prefix is put before every key the engine writes; "" means
	// DefaultEtcdPrefix. Hosts that share vaults use the same prefix. A
	// missing trailing '/' is added.
	Prefix string

	// TLS, if set, is used as is for client connections. Otherwise CertFile
	// and KeyFile name a client certificate and CAFile the roots that sign
	// the servers' certificates; all empty means plaintext.
	TLS                       *tls.Config
	CertFile, KeyFile, CAFile string

	// DialTimeout bounds the first connection; zero means
	// DefaultEtcdDialTimeout.
	DialTimeout time.Duration

	// Grace is how long Secret keeps answering from this host's copy of
	// the store after it last heard from the cluster; past it Secret fails
	// with ErrUnavailable until the host is back in sync. Zero means
	// DefaultEtcdGrace. The view is confirmed by a quorum read, which fails
	// while the cluster elects a leader, so keep Grace well above etcd's
	// election timeout (1 s by default) or a failover fails requests too.
	Grace time.Duration

	// Logger receives watch losses, reloads and purge failures. Nil
	// discards.
	Logger *slog.Logger
}

func (c *EtcdConfig) validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("etcd config: %w: no endpoints", ErrInvalid)
	}
	if c.DialTimeout < 0 || c.Grace < 0 {
		return fmt.Errorf("etcd config: %w: negative DialTimeout or Grace", ErrInvalid)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultEtcdDialTimeout
	}
	if c.Grace == 0 {
		c.Grace = DefaultEtcdGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// tlsConfig returns the client TLS configuration, or nil for plaintext.
func (c *EtcdConfig) tlsConfig() (*tls.Config, error) {
	if c.TLS != nil {
		return c.TLS.Clone(), nil
	}
	if c.CertFile == "" && c.KeyFile == "" && c.CAFile == "" {
		return nil, nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("etcd tls: %w: a client certificate needs both cert and key", ErrInvalid)
	}
	info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd tls: %w", err)
	}
	return cfg, nil
}

// Etcd is the fleet engine: every host of a fleet opens the same etcd
// cluster and prefix, and sees every other host's changes within the time a
// watch event takes to arrive.
//
// Reads are served from a copy of the whole keyspace under the prefix held
// in memory (the view), loaded at open and kept current by a watch, so the
// proxy's lookups never wait for the network. Writes go to etcd as guarded
// transactions (etcd_write.go) and return once the view shows them. etcd
// holds secrets only as records sealed under the fleet's master key, the
// same records Bolt keeps, so etcd's data, its snapshots or its backups
// reveal no secret without that key.
//
// Secret fails closed: when the view has not been confirmed current for
// longer than EtcdConfig.Grace it returns ErrUnavailable. Metadata reads
// (Vaults, Vault, Credentials, Credential) keep answering from the view,
// however old: they hold no secret, and status output is most useful
// exactly while the cluster is away.
//
// The engine expects a cluster, or at least a revision history, of its own:
// purges compact etcd, which drops old revisions of every key in the
// cluster, not only those under the prefix (etcd_purge.go).
type Etcd struct {
	cfg    EtcdConfig
	keys   keyring
	k      etcdKeys
	client *clientv3.Client
	tls    *tls.Config // for the clients purge pins to single members; nil = plaintext
	log    *slog.Logger
	start  time.Time // base of lastSync, so it follows the monotonic clock

	mu     sync.RWMutex // guards view and closed
	view   *etcdView
	closed bool

	// lastSync is when, as a time.Since(start), the view was last known
	// to be current: the start of the last heartbeat that found it so.
	lastSync atomic.Int64

	revMu    sync.Mutex    // guards rev and advanced
	rev      int64         // revision the view and its watchers have reached
	advanced chan struct{} // closed and replaced whenever rev grows

	watch  watchers
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watch, heartbeat and purge goroutines
}

var _ Store = (*Etcd)(nil)

// OpenEtcd connects to the cluster in cfg, checks that masterKey is the key
// the fleet's records are sealed under (the first host to open an empty
// prefix records it; a mismatch wraps ErrDecrypt), loads the view and
// starts watching. A purge an earlier host left unfinished is retried in
// the background.
func OpenEtcd(cfg EtcdConfig, masterKey []byte) (*Etcd, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	keys, err := newKeyring(masterKey)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	client, err := newEtcdClient(cfg, cfg.Endpoints, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}

	s := &Etcd{
		cfg:      cfg,
		keys:     keys,
		k:        etcdKeys{prefix: cfg.Prefix},
		client:   client,
		tls:      tlsCfg,
		log:      cfg.Logger.With(logSubsystem, "vault-etcd"),
		start:    time.Now(),
		advanced: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.open(); err != nil {
		s.cancel()
		return nil, errors.Join(fmt.Errorf("open etcd store %s: %w", cfg.Prefix, err), client.Close())
	}
	return s, nil
}

// newEtcdClient dials endpoints. The client's own zap logging is switched
// off: it would print to stderr, outside the injected logger.
func newEtcdClient(cfg EtcdConfig, endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		// Keepalives notice a member that vanished without closing the
		// connection, so the client moves to another. etcd refuses pings
		// more often than every 5 s (--grpc-keepalive-min-time).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// gRPC's default reconnect backoff grows to two minutes; a host
		// that lost the cluster should be back within moments of its
		// return, since it fails closed until then.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second,
			},
			MinConnectTimeout: time.Second,
		})},
	})
}

func (s *Etcd) open() error {
	// A cluster that does not answer within the dial timeout and a few
	// seconds more fails the open: without a view there is nothing to serve.
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout+5*time.Second)
	defer cancel()
	if err := s.checkKey(ctx); err != nil {
		return err
	}
	sent := time.Now()
	view, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.view = view
	s.rev = view.rev
	s.markSynced(sent)

	s.wg.Add(2)
	go s.watchLoop()
	go s.heartbeatLoop()
	if view.purgePending {
		s.wg.Add(1)
		go s.finishPurge()
	}
	return nil
}

// finishPurge retries a purge an earlier host left unfinished. It runs in
// the background, since a member that is down would hold up the open; if
// it fails again it is logged, and the next open or archive tries again.
func (s *Etcd) finishPurge() {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, purgeTimeout)
	defer cancel()
	if err := s.Purge(ctx); err != nil && s.ctx.Err() == nil {
		s.log.Warn("unfinished purge of old revisions failed again", logError, err)
	}
}

// checkKey records the key check under the prefix if there is none, or
// verifies the one there, in one transaction.
func (s *Etcd) checkKey(ctx context.Context) error {
	check, err := s.keys.sealKeyCheck()
	if err != nil {
		return err
	}
	key := s.k.keyCheck()
	var resp *clientv3.TxnResponse
	err = s.retry(ctx, func() error {
		var err error
		resp, err = s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(check))).
			Else(clientv3.OpGet(key)).
			Commit()
		return err
	})
	if err != nil {
		return etcdError{fmt.Errorf("key check: %w", err)}
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("key check: %w: vanished while read", ErrDecrypt)
	}
	if err := s.keys.verifyKeyCheck(kvs[0].Value); err != nil {
		return fmt.Errorf("master key does not match this store: %w", err)
	}
	return nil
}

// Client returns the store's etcd connection, for others that keep data in
// the same cluster, such as the fleet audit log (audit.OpenEtcd). It is
// closed by Close.
func (s *Etcd) Client() *clientv3.Client { return s.client }

// Engine names the fleet engine in status output.
func (s *Etcd) Engine() string { return "etcd" }

// Watch registers fn to be called for every change under the prefix, made
// by this host or any other, in revision order, from the goroutine that
// applies the watch. fn runs after the view shows the change and, for a
// change made through s, before the method that made it returns. After a
// reload (the watch fell behind a compaction) fn gets the difference
// between the old view and the new one, at the new revision.
func (s *Etcd) Watch(fn func(Change)) (cancel func()) {
	return s.watch.add(fn)
}

// Revision returns the etcd revision the view, and the watchers, have
// reached.
func (s *Etcd) Revision() int64 {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	return s.rev
}

// Sync waits until the view has caught up with every change committed in
// the cluster before Sync was called, so a read after it is as fresh as a
// read from etcd itself.
func (s *Etcd) Sync(ctx context.Context) error {
	var latest int64
	err := s.retry(ctx, func() error {
		var err error
		latest, err = s.latestRevision(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return s.waitRevision(ctx, latest)
}

// waitRevision waits until the view, and so every watcher, has reached rev
// or ctx ends.
func (s *Etcd) waitRevision(ctx context.Context, rev int64) error {
	for {
		s.revMu.Lock()
		cur, advanced := s.rev, s.advanced
		s.revMu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return etcdError{fmt.Errorf("view at revision %d, waiting for %d: %w", cur, rev, ctx.Err())}
		case <-s.ctx.Done():
			return errClosed
		}
	}
}

// publish records that the view and its watchers have reached rev.
func (s *Etcd) publish(rev int64) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	if rev <= s.rev {
		return
	}
	s.rev = rev
	close(s.advanced)
	s.advanced = make(chan struct{})
}

// markSynced notes that the cluster confirmed the view current as of at.
func (s *Etcd) markSynced(at time.Time) {
	t := int64(at.Sub(s.start))
	for {
		last := s.lastSync.Load()
		if t <= last || s.lastSync.CompareAndSwap(last, t) {
			return
		}
	}
}

// fresh returns nil while the view was confirmed current within the grace
// period, and an error wrapping ErrUnavailable once it was not.
// Fresh reports whether this host's copy is confirmed in sync with etcd
// within the grace period: nil, or an error wrapping ErrUnavailable. A
// cache of secrets layered on the engine consults it before serving, so
// that it fails closed when the engine does.
func (s *Etcd) Fresh() error { return s.fresh() }

func (s *Etcd) fresh() error {
	age := time.Since(s.start) - time.Duration(s.lastSync.Load())
	if age <= s.cfg.Grace {
		return nil
	}
	return fmt.Errorf("%w: last in sync with etcd %v ago, grace %v",
		ErrUnavailable, age.Round(time.Millisecond), s.cfg.Grace)
}

// Close stops the watch and closes the connection. Later calls fail;
// Close itself may be called again.
func (s *Etcd) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}

// etcdError marks a failure to talk to etcd. It wraps ErrUnavailable, so
// callers map it like an outage, and reads as the underlying cause.
type etcdError struct{ err error }

func (e etcdError) Error() string        { return "etcd: " + e.err.Error() }
func (e etcdError) Unwrap() error        { return e.err }
func (e etcdError) Is(target error) bool { return target == ErrUnavailable }
