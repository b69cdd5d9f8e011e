package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd layout under the fleet's prefix P. Each host appends to a chain of
// its own, so hosts never contend for the end of one chain, and the head of
// each chain is rewritten in the same transaction as its records, so the
// two never disagree.
//
//	P audit/HOST/SEQ     one record: its canonical line (the File format), SEQ as 20 digits
//	P audit-head/HOST    the chain's head: JSON head, as in a File's head file
//
// Every record carries its chain's name in Node, under the HMAC, so a
// record moved to another host's chain fails verification.

// DefaultEtcdPrefix is the prefix EtcdOptions.Prefix defaults to, the same
// as the vault store's.
const DefaultEtcdPrefix = "/keygate/"

// Limits of one etcd transaction: etcd refuses more than --max-txn-ops (128
// by default) operations or a request over --max-request-bytes (1.5 MiB).
const (
	etcdMaxBatch      = 100
	etcdMaxBatchBytes = 1 << 20
)

// etcdTimeout bounds one request to etcd; etcdRetry is the pause before a
// write that failed is tried again.
const (
	etcdTimeout = 5 * time.Second
	etcdRetry   = 250 * time.Millisecond
)

// etcdCloseTimeout is how long Close waits for records that cannot reach
// etcd before it gives them up.
const etcdCloseTimeout = 10 * time.Second

// EtcdOptions configure an Etcd log.
type EtcdOptions struct {
	// Prefix is the fleet's key prefix; "" means DefaultEtcdPrefix. A
	// missing trailing '/' is added.
	Prefix string
	// Host names this host's chain: 1-253 characters of A-Z, a-z, 0-9,
	// '.', '_' and '-', unique in the fleet (the host name does).
	Host string
	// Logger receives write failures and recoveries. Nil discards.
	Logger *slog.Logger
	// QueueSize is how many records Append can queue ahead of the writer
	// before it blocks. Zero means DefaultQueueSize.
	QueueSize int
}

func (o *EtcdOptions) validate() error {
	if err := validateHost(o.Host); err != nil {
		return err
	}
	if o.QueueSize < 0 {
		return fmt.Errorf("audit options: %w: negative QueueSize", ErrInvalid)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	return nil
}

// validateHost checks a chain name: it becomes part of a key, so it may
// not hold '/'.
func validateHost(h string) error {
	if len(h) == 0 || len(h) > 253 {
		return fmt.Errorf("audit host %q: %w: 1-253 characters", h, ErrInvalid)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("audit host %q: %w: only A-Z, a-z, 0-9, '.', '_' and '-'", h, ErrInvalid)
		}
	}
	return nil
}

// etcdKeys names the keys of the log.
type etcdKeys struct{ prefix string }

func (k etcdKeys) records() string          { return k.prefix + "audit/" }
func (k etcdKeys) heads() string            { return k.prefix + "audit-head/" }
func (k etcdKeys) chain(host string) string { return k.records() + host + "/" }
func (k etcdKeys) head(host string) string  { return k.heads() + host }
func (k etcdKeys) record(host string, seq uint64) string {
	return fmt.Sprintf("%s%020d", k.chain(host), seq)
}

// Etcd is a Log kept in etcd, for a fleet of hosts that share a cluster:
// each host appends to its own hash chain, Query merges every host's
// records by time, and Verify checks every chain. A record is durable once
// etcd has committed it, which means a quorum of members has it on disk.
//
// Append queues records for a background writer that commits them in
// batches, one transaction each. While etcd cannot be reached the writer
// keeps trying, the queue fills and Append blocks, as a File's does on a
// stalled disk: records are never dropped to let requests pass unrecorded.
//
// The records are not secret material and so are kept when a vault is
// archived: the purge's compaction drops only old revisions, and records
// are never rewritten.
//
// TODO: the chains grow without bound (a File rotates into local
// segments; these stay in etcd, under its database quota) and Query and
// Verify read all of them; a fleet that keeps years of records needs
// chains cut into segments, and segments shipped out of etcd.
type Etcd struct {
	client *clientv3.Client
	k      etcdKeys
	host   string
	key    []byte
	log    *slog.Logger

	appender                    // the queue to the writer; broken if the chain was taken
	done     chan struct{}      // closed when the writer has returned
	ctx      context.Context    // of the writer's requests
	stop     context.CancelFunc // gives up on records Close cannot wait for
}

var _ Log = (*Etcd)(nil)

// OpenEtcd opens this host's chain in the fleet's log on client, which the
// caller keeps and closes after the log (the vault store's connection
// serves). key is the audit key from DeriveKey. Like OpenFile it checks the
// chain's last record and head, and refuses, with an error wrapping
// ErrTampered, a chain that does not agree with its head.
func OpenEtcd(client *clientv3.Client, key []byte, opts EtcdOptions) (*Etcd, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c, err := newChainer(key)
	if err != nil {
		return nil, err
	}

	l := &Etcd{
		client:   client,
		k:        etcdKeys{prefix: opts.Prefix},
		host:     opts.Host,
		key:      append([]byte(nil), key...),
		log:      opts.Logger.With(logSubsystem, "audit-etcd"),
		appender: appender{queue: make(chan request, opts.QueueSize)},
		done:     make(chan struct{}),
	}
	l.ctx, l.stop = context.WithCancel(context.Background())
	w := &etcdWriter{l: l, c: c}
	if err := w.recover(); err != nil {
		l.stop()
		return nil, fmt.Errorf("open audit chain %s: %w", opts.Host, err)
	}
	go w.run()
	return l, nil
}

// Append queues r to be committed and returns without waiting for etcd.
// The error wraps ErrInvalid, ErrBroken or is ErrClosed.
func (l *Etcd) Append(r Record) error {
	return l.enqueue(context.Background(), r, nil)
}

// AppendSync commits r and returns once etcd has, or when ctx ends; then r
// may still be written.
func (l *Etcd) AppendSync(ctx context.Context, r Record) error {
	return l.appendSync(ctx, r)
}

// Query returns the records of every host's chain that match f, oldest
// first; records with the same time keep their chain's order. It does not
// check the chains; Verify does. A record that does not parse fails the
// query with an error wrapping ErrTampered.
func (l *Etcd) Query(f Filter) ([]Record, error) {
	chains, _, err := l.read()
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, host := range slices.Sorted(maps.Keys(chains)) {
		for i, line := range chains[host] {
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil {
				return nil, fmt.Errorf("query audit chain %s: record %d: %w: %w", host, i+1, err, ErrTampered)
			}
			if f.match(&rec) {
				out = append(out, rec)
			}
		}
	}
	sortByTime(out)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// read returns every chain's lines in seq order and every head, as of one
// revision.
func (l *Etcd) read() (chains map[string][][]byte, heads map[string][]byte, err error) {
	if l.isClosed() {
		return nil, nil, ErrClosed
	}

	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	sorted := clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)
	resp, err := l.client.Txn(ctx).Then(
		clientv3.OpGet(l.k.records(), clientv3.WithPrefix(), sorted),
		clientv3.OpGet(l.k.heads(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("read audit chains: %w", err)
	}

	chains, heads = map[string][][]byte{}, map[string][]byte{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		host, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), l.k.records()), "/")
		chains[host] = append(chains[host], kv.Value)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		heads[strings.TrimPrefix(string(kv.Key), l.k.heads())] = kv.Value
	}
	return chains, heads, nil
}

// Close waits until every queued record is committed, or gives up on the
// rest after etcdCloseTimeout if etcd cannot be reached, and stops the
// writer. It does not close the client. It returns the error that broke
// the log, if one did. Calls after the first return nil.
func (l *Etcd) Close() error {
	if !l.shut() {
		return nil
	}
	select {
	case <-l.done:
	case <-time.After(etcdCloseTimeout):
		l.stop()
		<-l.done
	}
	l.stop()
	return l.brokenErr()
}
