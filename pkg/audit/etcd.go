package audit

import (
	"bytes"
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
//	P audit-base/HOST    where the chain in etcd begins, once records have been moved out (etcd_export.go)
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
	// MaxRecords, if not zero, is about how many of this host's records
	// stay in etcd; older ones are moved to a local log under ExportDir
	// (see etcd_export.go). Zero keeps every record in etcd.
	MaxRecords int
	// ExportDir holds the local logs of records moved out of etcd, one
	// per host at ExportDir/HOST/audit.log. Required with MaxRecords.
	ExportDir string
}

func (o *EtcdOptions) validate() error {
	if err := validateHost(o.Host); err != nil {
		return err
	}
	if o.QueueSize < 0 {
		return fmt.Errorf("audit options: %w: negative QueueSize", ErrInvalid)
	}
	if o.MaxRecords < 0 || o.MaxRecords > 0 && o.ExportDir == "" {
		return fmt.Errorf("audit options: %w: MaxRecords needs an ExportDir and may not be negative", ErrInvalid)
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
func (k etcdKeys) bases() string            { return k.prefix + "audit-base/" }
func (k etcdKeys) chain(host string) string { return k.records() + host + "/" }
func (k etcdKeys) head(host string) string  { return k.heads() + host }
func (k etcdKeys) base(host string) string  { return k.bases() + host }
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
// With EtcdOptions.MaxRecords, a host's older records move out of etcd to
// a local log (etcd_export.go), so the chains stay within etcd's quota.
// Query and Verify then see every host's records still in etcd and this
// host's moved ones; another host's moved records are on that host.
type Etcd struct {
	client    *clientv3.Client
	k         etcdKeys
	host      string
	key       []byte
	log       *slog.Logger
	exportDir string        // "" when records stay in etcd
	exp       *etcdExporter // nil when records stay in etcd
	expDone   chan struct{} // closed when the exporter has returned

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
		client:    client,
		k:         etcdKeys{prefix: opts.Prefix},
		host:      opts.Host,
		key:       append([]byte(nil), key...),
		log:       opts.Logger.With(logSubsystem, "audit-etcd"),
		appender:  appender{queue: make(chan request, opts.QueueSize)},
		done:      make(chan struct{}),
		exportDir: opts.ExportDir,
	}
	l.ctx, l.stop = context.WithCancel(context.Background())
	w := &etcdWriter{l: l, c: c}
	if opts.MaxRecords > 0 {
		ec, _ := newChainer(key)
		l.exp = &etcdExporter{l: l, c: ec, path: exportPath(opts.ExportDir, opts.Host),
			max: uint64(opts.MaxRecords), kick: make(chan struct{}, 1)}
		l.expDone = make(chan struct{})
	}
	if err := w.recover(); err != nil {
		l.stop()
		return nil, fmt.Errorf("open audit chain %s: %w", opts.Host, err)
	}
	if l.exp != nil {
		l.exp.committedUpTo(w.seq) // a chain already over the limit
		go l.exp.run(l.expDone)
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
// first; records with the same time keep their chain's order. The chains
// are those in etcd and this host's records moved out of it. It does not
// check the chains; Verify does. A record that does not parse fails the
// query with an error wrapping ErrTampered.
func (l *Etcd) Query(f Filter) ([]Record, error) {
	v, err := l.read()
	if err != nil {
		return nil, err
	}
	// With a limit the newest moved records are the only ones that can
	// be among the newest of all.
	out, err := l.queryMoved(f, v.bases[l.host])
	if err != nil {
		return nil, err
	}
	for _, host := range slices.Sorted(maps.Keys(v.chains)) {
		for i, line := range v.chains[host] {
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

// queryMoved returns the records of this host's export log that match f
// and lie at or before base, the seq the chain in etcd begins after (a
// segment whose move did not land yet is in etcd too). There is no export
// log when nothing has moved.
func (l *Etcd) queryMoved(f Filter, base []byte) ([]Record, error) {
	if l.exportDir == "" || base == nil {
		return nil, nil
	}
	var b head
	if err := json.Unmarshal(base, &b); err != nil {
		return nil, fmt.Errorf("query audit chain %s: base: %w: %w", l.host, err, ErrTampered)
	}
	segs, err := openSegments(exportPath(l.exportDir, l.host))
	if err != nil {
		return nil, fmt.Errorf("query audit records moved out of etcd: %w", err)
	}
	defer closeAll(segs)
	recs, err := query(chainReader(segs, bytes.NewReader(nil)), f)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(recs, func(r Record) bool { return r.Seq > b.Seq }), nil
}

// etcdView is every chain as of one revision.
type etcdView struct {
	chains map[string][][]byte // each host's lines in seq order
	heads  map[string][]byte
	bases  map[string][]byte // for the chains records were moved out of
}

// read returns every chain's lines, heads and bases, as of one revision.
func (l *Etcd) read() (etcdView, error) {
	if l.isClosed() {
		return etcdView{}, ErrClosed
	}

	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	sorted := clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)
	resp, err := l.client.Txn(ctx).Then(
		clientv3.OpGet(l.k.records(), clientv3.WithPrefix(), sorted),
		clientv3.OpGet(l.k.heads(), clientv3.WithPrefix()),
		clientv3.OpGet(l.k.bases(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return etcdView{}, fmt.Errorf("read audit chains: %w", err)
	}

	v := etcdView{chains: map[string][][]byte{}, heads: map[string][]byte{}, bases: map[string][]byte{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		host, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), l.k.records()), "/")
		v.chains[host] = append(v.chains[host], kv.Value)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		v.heads[strings.TrimPrefix(string(kv.Key), l.k.heads())] = kv.Value
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		v.bases[strings.TrimPrefix(string(kv.Key), l.k.bases())] = kv.Value
	}
	return v, nil
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
	if l.expDone != nil {
		<-l.expDone
	}
	return l.brokenErr()
}
