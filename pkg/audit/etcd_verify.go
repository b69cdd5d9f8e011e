package audit

import (
	"fmt"
	"slices"

	"github.com/keygate/keygate/internal/mapkeys"
)

// Verify checks every host's chain against the audit key and its head and
// reports the first bad record, with Failure.Chain naming its chain and
// Failure.Line its seq there. Records counts the records verified in all
// chains; LastHash and HeadSeq, which belong to one chain, are left empty.
// A failing log wraps ErrTampered; other errors are etcd's.
func (l *Etcd) Verify() (Report, error) {
	chains, heads, err := l.read()
	if err != nil {
		return Report{}, err
	}
	c, err := newChainer(l.key)
	if err != nil {
		return Report{}, err
	}

	var rep Report
	for _, host := range mapkeys.SortedUnion(chains, heads) {
		var h *head
		if raw, ok := heads[host]; ok {
			hd, fail := parseHead(raw, c)
			if fail != nil {
				return failed(rep, host, fail)
			}
			h = &hd
		}
		n, fail := verifyChain(c, host, chains[host], h)
		rep.Records += n
		if fail != nil {
			return failed(rep, host, fail)
		}
	}
	rep.OK = true
	return rep, nil
}

// verifyChain checks the lines of host's chain, in seq order, against h,
// its head (nil if none). It returns how many verified before the first
// failure.
func verifyChain(c *chainer, host string, lines [][]byte, h *head) (int, *Failure) {
	prev := genesis
	for i, line := range lines {
		n := i + 1
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
	return len(lines), checkLength(len(lines), h)
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
