package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/mapkeys"
)

// Verify checks every host's chain against the audit key and its head and
// reports the first bad record, with Failure.Chain naming its chain and
// Failure.Line its seq there. A chain records were moved out of begins
// after its base; this host's moved records are verified too, in their
// export log, which must end at the base. Records counts the records
// verified in all chains; LastHash and HeadSeq, which belong to one chain,
// are left empty. A failing log wraps ErrTampered; other errors are etcd's.
func (l *Etcd) Verify() (Report, error) {
	v, err := l.read()
	if err != nil {
		return Report{}, err
	}
	c, err := newChainer(l.key)
	if err != nil {
		return Report{}, err
	}

	var rep Report
	for _, host := range mapkeys.SortedUnion(v.chains, v.heads) {
		var h *head
		if raw, ok := v.heads[host]; ok {
			hd, fail := parseHead(raw, c)
			if fail != nil {
				return failed(rep, host, fail)
			}
			h = &hd
		}
		b := head{Hash: genesis}
		if raw, ok := v.bases[host]; ok {
			var fail *Failure
			if b, fail = parseBase(raw, c); fail != nil {
				return failed(rep, host, fail)
			}
		}
		n, fail := verifyChain(c, host, v.chains[host], h, b)
		rep.Records += n
		if fail != nil {
			return failed(rep, host, fail)
		}
		if host == l.host && b.Seq > 0 {
			n, fail, err := l.verifyMoved(b)
			if err != nil {
				return Report{}, err
			}
			rep.Records += n
			if fail != nil {
				return failed(rep, host, fail)
			}
		}
	}
	rep.OK = true
	return rep, nil
}

// verifyMoved verifies this host's export log and that it reaches the
// chain's base b, and returns how many of its records, up to b, verified.
// A log moved elsewhere whole is not a failure here (verify it where it
// is, with VerifyFile); one that is there must hold.
func (l *Etcd) verifyMoved(b head) (int, *Failure, error) {
	if l.exportDir == "" {
		return 0, nil, nil
	}
	path := exportPath(l.exportDir, l.host)
	rep, err := VerifyFile(path, l.key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil, nil
	case rep.Failure != nil:
		rep.Failure.Detail = strings.TrimSpace("in " + path + ": " + rep.Failure.Detail)
		return min(rep.Records, int(b.Seq)), rep.Failure, nil
	case err != nil:
		return 0, nil, err
	case rep.HeadSeq < b.Seq:
		return rep.Records, exportMismatch(path, rep.HeadSeq, b), nil
	}
	// The log's head was checked against the record it names. At the
	// base's seq it must name the base's record. A head further on is a
	// segment written since (the move may not have landed): its records
	// are in etcd too, which verified them.
	c, err := newChainer(l.key)
	if err != nil {
		return 0, nil, err
	}
	if h, err := readHead(headPath(path), c); err == nil && h.Seq == b.Seq && !equalHash(h.Hash, b.Hash) {
		return rep.Records, exportMismatch(path, h.Seq, b), nil
	}
	return int(b.Seq), nil, nil
}

func exportMismatch(path string, end uint64, b head) *Failure {
	return &Failure{Line: int(end), Reason: ReasonExportMismatch,
		Detail: fmt.Sprintf("%s ends at seq %d, the chain in etcd begins after seq %d", path, end, b.Seq)}
}

// verifyChain checks the lines of host's chain, in seq order, against h,
// its head (nil if none), and b, its base: the first line must follow the
// record b names. It returns how many verified before the first failure.
func verifyChain(c *chainer, host string, lines [][]byte, h *head, b head) (int, *Failure) {
	prev := b.Hash
	for i, line := range lines {
		n := int(b.Seq) + i + 1
		rec, fail := verifyLine(c, line, n, prev)
		switch {
		case fail != nil:
		case rec.Node != host:
			fail = &Failure{Reason: ReasonWrongChain, Detail: "names chain " + rec.Node}
		case h != nil && uint64(n) == h.Seq && !equalHash(rec.Hash, h.Hash):
			fail = &Failure{Reason: ReasonHeadMismatch}
		case h != nil && uint64(n) > h.Seq:
			fail = &Failure{Reason: ReasonBeyondHead, Detail: fmt.Sprintf("head names seq %d", h.Seq)}
		}
		if fail != nil {
			fail.Line = n
			return i, fail
		}
		prev = rec.Hash
	}
	// As when a log is opened: the chain must reach its head, and a head
	// at its end (the base, with nothing left in etcd) must name it.
	return len(lines), checkTail(b.Seq+uint64(len(lines)), prev, h)
}

// failed completes a report that found fail in host's chain.
func failed(rep Report, host string, fail *Failure) (Report, error) {
	fail.Chain = host
	rep.Failure = fail
	return rep, fmt.Errorf("verify audit chain %s: line %d: %w: %w", host, fail.Line, fail, ErrTampered)
}

// sortByTime orders records by time; records with equal times keep the
// order they are in.
func sortByTime(recs []Record) {
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Time.Compare(b.Time) })
}
