package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// errChainTaken says another writer appended to this host's chain: two
// keygated on one host name, or a host name reused.
var errChainTaken = errors.New("another writer appended to this host's chain")

// etcdWriter is the goroutine that owns the end of this host's chain, like
// a File's writer.
type etcdWriter struct {
	l *Etcd
	c *chainer

	seq     uint64 // seq of the last record committed
	prev    string // hash of the last record committed
	headRev int64  // ModRevision of the head key; 0 before the first commit

	batch  []request // reused between commits
	failed bool      // the last commit attempt failed; logged once per outage
}

// recover reads the end of the chain and its head and checks that they
// agree, as OpenFile does for a file. Records and head are committed in one
// transaction, so unlike a file's they must agree exactly.
func (w *etcdWriter) recover() error {
	ctx, cancel := context.WithTimeout(w.l.ctx, etcdTimeout)
	defer cancel()
	host := w.l.host
	resp, err := w.l.client.Txn(ctx).Then(
		clientv3.OpGet(w.l.k.head(host)),
		clientv3.OpGet(w.l.k.chain(host), clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1)),
		clientv3.OpGet(w.l.k.base(host)),
	).Commit()
	if err != nil {
		return fmt.Errorf("read audit chain: %w", err)
	}

	var h *head
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		hd, fail := parseHead(kvs[0].Value, w.c)
		if fail != nil {
			return tampered(fail)
		}
		h, w.headRev = &hd, kvs[0].ModRevision
	}
	// With every record moved out of etcd, the chain ends at its base.
	base, baseRev := head{Hash: genesis}, int64(0)
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		b, fail := parseBase(kvs[0].Value, w.c)
		if fail != nil {
			return tampered(fail)
		}
		base, baseRev = b, kvs[0].ModRevision
	}
	seq, last := base.Seq, base.Hash
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		rec, fail := checkLastLine(w.c, kvs[0].Value)
		if fail == nil && rec.Node != host {
			fail = &Failure{Reason: ReasonWrongChain, Detail: "last record names chain " + rec.Node}
		}
		if fail != nil {
			return tampered(fail)
		}
		if rec.Seq <= base.Seq {
			return tampered(&Failure{Line: int(rec.Seq), Reason: ReasonSeqGap,
				Detail: fmt.Sprintf("chain ends at seq %d, before its base %d", rec.Seq, base.Seq)})
		}
		seq, last = rec.Seq, rec.Hash
	}
	if fail := checkTail(seq, last, h); fail != nil {
		return tampered(fail)
	}
	if h != nil && h.Seq < seq {
		return tampered(&Failure{Line: int(h.Seq) + 1, Reason: ReasonBeyondHead})
	}
	w.seq, w.prev = seq, last
	if w.l.exp != nil {
		w.l.exp.setBase(base, baseRev)
	}
	return nil
}

// run commits batches until Close closes the queue and it is drained.
func (w *etcdWriter) run() {
	defer close(w.l.done)
	for {
		batch, open := w.collect()
		if len(batch) > 0 {
			w.commit(batch)
		}
		if !open {
			return
		}
	}
}

// collect waits for one request, then takes whatever else is queued, as
// much as one transaction holds, without waiting.
func (w *etcdWriter) collect() ([]request, bool) {
	req, ok := <-w.l.queue
	if !ok {
		return nil, false
	}
	batch := append(w.batch[:0], req)
	size := recordSize(&req.rec)
	for len(batch) < etcdMaxBatch && size < etcdMaxBatchBytes/2 {
		select {
		case req, ok := <-w.l.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, req)
			size += recordSize(&req.rec)
		default:
			return batch, true
		}
	}
	return batch, true
}

// commit chains one batch and commits it with the new head in one
// transaction, retrying while etcd cannot be reached, then tells the
// waiters.
func (w *etcdWriter) commit(batch []request) {
	defer clear(batch)
	w.batch = batch
	if err := w.l.brokenErr(); err != nil {
		notify(batch, err)
		return
	}

	ops, seq, prev, lastLine := w.chain(batch)
	if len(ops) == 0 {
		notify(batch, nil) // every record was refused, each with its error
		return
	}
	headVal, err := encodeHead(w.c, seq, prev)
	if err != nil {
		notify(batch, err)
		return
	}
	ops = append(ops, clientv3.OpPut(w.l.k.head(w.l.host), string(headVal)))

	for {
		rev, err := w.try(ops, w.l.k.record(w.l.host, seq), lastLine)
		if err == nil {
			w.seq, w.prev, w.headRev = seq, prev, rev
			if w.l.exp != nil {
				w.l.exp.committedUpTo(seq)
			}
			if w.failed {
				w.l.log.Info("audit records reach etcd again", logSeq, seq)
			}
			w.failed = false
			notify(batch, nil)
			return
		}
		if errors.Is(err, errChainTaken) || w.l.ctx.Err() != nil {
			err = fmt.Errorf("append audit record: %w: %w", ErrBroken, err)
			w.l.broken.CompareAndSwap(nil, &err)
			notify(batch, err)
			return
		}
		if !w.failed {
			w.l.log.Error("audit records cannot reach etcd; retrying", logSeq, w.seq+1, logError, err)
		}
		w.failed = true
		select {
		case <-time.After(etcdRetry):
		case <-w.l.ctx.Done():
		}
	}
}

// chain gives each record of batch its seq, node, prev and hash, and
// returns the puts of their lines, the new end of the chain and the last
// line. A record that cannot be encoded gets an error and no seq.
func (w *etcdWriter) chain(batch []request) (ops []clientv3.Op, seq uint64, prev string, last []byte) {
	seq, prev = w.seq, w.prev
	for i := range batch {
		r := &batch[i].rec
		r.Seq, r.Node, r.Prev = seq+1, w.l.host, prev
		body, err := encodeBody(*r)
		if err != nil {
			batch[i].err = err
			continue
		}
		r.Hash = w.c.recordHash(prev, body)
		last = appendLine(nil, body, r.Hash)
		ops = append(ops, clientv3.OpPut(w.l.k.record(w.l.host, r.Seq), string(last)))
		seq, prev = r.Seq, r.Hash
	}
	return ops, seq, prev, last
}

// try commits ops if the chain still ends where this writer left it and
// returns the revision that holds them. If the chain has moved on, it was
// either this batch, committed by an earlier try whose answer was lost, or
// another writer (errChainTaken); the batch's last record tells which.
func (w *etcdWriter) try(ops []clientv3.Op, lastKey string, lastLine []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(w.l.ctx, etcdTimeout)
	defer cancel()
	first := w.l.k.record(w.l.host, w.seq+1)
	resp, err := w.l.client.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(first), "=", 0),
		clientv3.Compare(clientv3.ModRevision(w.l.k.head(w.l.host)), "=", w.headRev),
	).Then(ops...).Else(clientv3.OpGet(lastKey)).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && bytes.Equal(kvs[0].Value, lastLine) {
		return kvs[0].ModRevision, nil
	}
	return 0, errChainTaken
}

// recordSize bounds the size of r's line: its text, escaped at worst six
// bytes for one, and the fixed fields.
func recordSize(r *Record) int {
	n := len(r.Kind) + len(r.Actor) + len(r.Sandbox) + len(r.Vault) + len(r.Credential) +
		len(r.Host) + len(r.Method) + len(r.Path) + len(r.Reason) + len(r.Detail)
	return 6*n + 512
}
