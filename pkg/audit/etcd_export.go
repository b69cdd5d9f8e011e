package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/fsutil"
)

// Moving records out of etcd. Every injected request is a record, so a
// busy host's chain would fill etcd's database quota (2 GiB by default)
// within hours, and then every write to the cluster, vaults' included,
// would fail. An Etcd with EtcdOptions.MaxRecords set therefore keeps
// about that many of its own chain's records in etcd. Past it, the oldest
// go, in steps of at most exportChunk, to a local log at
// ExportDir/HOST/audit.log in the File format (segments named by their
// last seq, and a head), which `keygate audit verify --offline` checks
// like any log. Only then do they leave etcd, in one transaction that
// also moves the chain's base:
//
//	P audit-base/HOST    the last record moved out: JSON {seq, hash, mac}, sealed apart from a head
//
// Verify starts the chain in etcd at its base, so the records left there
// still verify from the first to the head, and a record deleted at the
// front is a gap, as anywhere else. After the move the cluster is compacted
// to that revision, so the space is reused (etcd keeps old revisions
// until a compaction). Records are never deleted from etcd unless they are
// fsynced in the local log; an export log that does not continue where
// the base says the chain was cut stops the moving, with an error logged,
// and the records stay in etcd.

// exportChunk is the most records one step moves: one segment, one
// transaction, held in memory while it is written: at the ~500 bytes of a
// request record, ~10 MB.
const exportChunk = 20_000

// exportPage is how many records one read of the records to move fetches.
const exportPage = 1_000

// exportRetry is the pause after a step that failed for a reason that may
// pass (etcd unreachable, the disk full).
const exportRetry = 5 * time.Second

// errExportGap says the local export log does not end where the chain's
// base does, so a new segment could not continue it.
var errExportGap = errors.New("the export log does not end where the chain in etcd begins")

// etcdExporter moves this host's oldest records out of etcd. It runs in a
// goroutine of its own, woken by the writer; it owns the base key.
type etcdExporter struct {
	l    *Etcd
	c    *chainer // its own: a chainer is not safe for concurrent use
	path string   // the export log
	max  uint64   // records kept in etcd

	base    head  // the chain's base: seq 0 and genesis when nothing has moved
	baseRev int64 // ModRevision of the base key; 0 while there is none

	moved     atomic.Uint64 // base.Seq, for the writer
	committed atomic.Uint64 // the writer's last committed seq
	kick      chan struct{} // the writer's wake-up; capacity 1
	failing   atomic.Bool   // the last step failed (logged once until one succeeds), or moving stopped
}

// exportPath is the local log that host's records moved out of etcd go to.
func exportPath(dir, host string) string {
	return filepath.Join(dir, host, "audit.log")
}

// chunk is how many records a step moves when the chain is over max.
func (e *etcdExporter) chunk() uint64 {
	return max(1, min(e.max/2, exportChunk))
}

// Moved reports the seq of the last of this host's records moved out of
// etcd (0 for none), and whether moving them is failing or has stopped
// (see the log for why). Both are zero when records stay in etcd.
func (l *Etcd) Moved() (seq uint64, failing bool) {
	if l.exp == nil {
		return 0, false
	}
	return l.exp.moved.Load(), l.exp.failing.Load()
}

// committedUpTo tells the exporter the writer has committed seq, and wakes
// it once the chain in etcd holds more than max records.
func (e *etcdExporter) committedUpTo(seq uint64) {
	e.committed.Store(seq)
	if seq > e.moved.Load()+e.max {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// setBase records the chain's base as read or written at revision rev.
func (e *etcdExporter) setBase(b head, rev int64) {
	e.base, e.baseRev = b, rev
	e.moved.Store(b.Seq)
}

// run moves records whenever the writer wakes it, until the log stops. A
// step that fails is retried after exportRetry; a gap in the export log
// or a chain that does not verify stops the moving for good, since only
// an operator can mend either.
func (e *etcdExporter) run(done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-e.kick:
		case <-e.l.ctx.Done():
			return
		}
		for {
			more, err := e.step()
			if err != nil {
				if !e.failing.Swap(true) {
					e.l.log.Error("audit records cannot be moved out of etcd; they stay there", logError, err)
				}
				if errors.Is(err, errExportGap) || errors.Is(err, ErrTampered) || errors.Is(err, errChainTaken) {
					return
				}
				select {
				case <-time.After(exportRetry):
					continue
				case <-e.l.ctx.Done():
					return
				}
			}
			if e.failing.Swap(false) {
				e.l.log.Info("audit records move out of etcd again", logSeq, e.base.Seq)
			}
			if !more {
				break
			}
		}
	}
}

// step moves the oldest records of the chain out of etcd if it holds more
// than max, and reports whether it still does.
func (e *etcdExporter) step() (more bool, err error) {
	last := e.committed.Load()
	if last <= e.base.Seq+e.max {
		return false, nil
	}
	cut, cutHash, err := e.pendingCut()
	if err != nil {
		return false, err
	}
	if cut == 0 {
		cut = min(e.base.Seq+e.chunk(), last-e.max/2)
		if cutHash, err = e.writeSegment(cut); err != nil {
			return false, err
		}
	}
	if err := e.moveBase(cut, cutHash); err != nil {
		return false, err
	}
	return last > e.base.Seq+e.max, nil
}

// pendingCut compares the export log's head with the chain's base. Equal,
// or no export log while nothing has moved, it returns 0: the next
// segment continues the log. Ahead, a step wrote its segment and did not
// get to move the base: it returns that segment's end, to finish the move
// once etcd is seen to hold the same record there.
func (e *etcdExporter) pendingCut() (uint64, string, error) {
	h, err := readHead(headPath(e.path), e.c)
	switch {
	case errors.Is(err, errNoHead):
		if e.base.Seq == 0 {
			return 0, "", nil
		}
		return 0, "", fmt.Errorf("%w: %s has no head, and the chain was cut after seq %d", errExportGap, e.path, e.base.Seq)
	case err != nil:
		return 0, "", fmt.Errorf("%w: %s: %w", errExportGap, e.path, err)
	case h.Seq == e.base.Seq && equalHash(h.Hash, e.base.Hash):
		return 0, "", nil
	case h.Seq <= e.base.Seq:
		return 0, "", fmt.Errorf("%w: %s ends at seq %d, the chain was cut after seq %d", errExportGap, e.path, h.Seq, e.base.Seq)
	}
	line, err := e.get(h.Seq)
	if err != nil {
		return 0, "", err
	}
	rec, _, fail := decodeLine(line)
	if fail != nil || !equalHash(rec.Hash, h.Hash) {
		return 0, "", fmt.Errorf("%w: %s names seq %d, which etcd holds otherwise", errExportGap, e.path, h.Seq)
	}
	return h.Seq, h.Hash, nil
}

// get reads the line of record seq.
func (e *etcdExporter) get(seq uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(e.l.ctx, etcdTimeout)
	defer cancel()
	resp, err := e.l.client.Get(ctx, e.l.k.record(e.l.host, seq))
	if err != nil {
		return nil, fmt.Errorf("read audit record %d: %w", seq, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("read audit record %d: %w: missing", seq, ErrTampered)
	}
	return resp.Kvs[0].Value, nil
}

// writeSegment copies records base+1 to cut from etcd into a new segment of
// the export log, checking each against the chain, and makes the segment
// and the log's new head durable. It returns the hash of record cut.
func (e *etcdExporter) writeSegment(cut uint64) (string, error) {
	if err := os.MkdirAll(filepath.Dir(e.path), 0o700); err != nil {
		return "", fmt.Errorf("export audit records: %w", err)
	}
	var buf bytes.Buffer
	prev := e.base.Hash
	for from := e.base.Seq + 1; from <= cut; {
		ctx, cancel := context.WithTimeout(e.l.ctx, etcdTimeout)
		resp, err := e.l.client.Get(ctx, e.l.k.record(e.l.host, from),
			clientv3.WithRange(e.l.k.record(e.l.host, cut+1)), clientv3.WithLimit(exportPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		cancel()
		if err != nil {
			return "", fmt.Errorf("read audit records to export: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return "", fmt.Errorf("export audit records: %w: seq %d missing from etcd", ErrTampered, from)
		}
		for _, kv := range resp.Kvs {
			rec, fail := verifyLine(e.c, kv.Value, int(from), prev)
			if fail == nil && rec.Node != e.l.host {
				fail = &Failure{Reason: ReasonWrongChain, Detail: "names chain " + rec.Node}
			}
			if fail != nil {
				fail.Line, fail.Chain = int(from), e.l.host
				return "", fmt.Errorf("export audit records: %w: %w", fail, ErrTampered)
			}
			buf.Write(kv.Value)
			prev = rec.Hash
			from++
		}
	}
	seg := segmentPath(e.path, cut)
	if err := fsutil.WriteFileAtomic(seg, buf.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("export audit records: %w", err)
	}
	if err := writeHead(headPath(e.path), e.c, cut, prev); err != nil {
		return "", fmt.Errorf("export audit records: %w", err)
	}
	if err := fsutil.SyncDir(filepath.Dir(e.path)); err != nil {
		return "", fmt.Errorf("export audit records: %w", err)
	}
	return prev, nil
}

// moveBase deletes records base+1 to cut from etcd and makes cut the base,
// in one transaction that holds only if no one else moved the base, then
// compacts the cluster to that revision.
func (e *etcdExporter) moveBase(cut uint64, cutHash string) error {
	val, err := encodeBase(e.c, cut, cutHash)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.l.ctx, etcdTimeout)
	defer cancel()
	key := e.l.k.base(e.l.host)
	resp, err := e.l.client.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(key), "=", e.baseRev),
	).Then(
		clientv3.OpPut(key, string(val)),
		clientv3.OpDelete(e.l.k.record(e.l.host, e.base.Seq+1), clientv3.WithRange(e.l.k.record(e.l.host, cut+1))),
	).Commit()
	if err != nil {
		return fmt.Errorf("move audit records out of etcd: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("move audit records out of etcd: %w: its base moved", errChainTaken)
	}
	e.setBase(head{Seq: cut, Hash: cutHash}, resp.Header.Revision)
	if _, err := e.l.client.Compact(ctx, resp.Header.Revision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		e.l.log.Warn("audit records moved out of etcd, but compacting failed", logError, err)
	}
	return nil
}
