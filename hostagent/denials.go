//go:build linux

package hostagent

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keygate/keygate/bpf"
	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/lograte"
)

// KindCaptureDeny is the audit kind of a refusal made in the kernel by
// the capture programs (non-DNS UDP, ICMP, packets past the socket hooks,
// spoofed sources), which the proxy and resolver never see.
const KindCaptureDeny audit.Kind = "capture.deny"

// captureDenyEvery is how often per sandbox and reason a capture refusal
// is audited; the rest are counted in the next record (and always in the
// metrics). Ordinary programs make some: glibc's getaddrinfo connects a UDP
// socket to each address it sorts (RFC 6724 source selection), which the
// socket hooks refuse like any other non-DNS UDP.
const captureDenyEvery = time.Second

// denialAuditor turns the capture programs' deny events into audit
// records, at most one per sandbox per captureDenyEvery.
type denialAuditor struct {
	a       *Agent
	readers []*bpf.EventReader
	wg      sync.WaitGroup

	mu     sync.Mutex
	limits map[string]*lograte.Limiter // per "sandbox/reason"; guarded by mu
}

// startDenialAudit reads the deny events of the cgroup programs and of the
// veth guard and steering programs.
func (a *Agent) startDenialAudit() error {
	d := &denialAuditor{a: a, limits: make(map[string]*lograte.Limiter)}
	for _, open := range []func() (*bpf.EventReader, error){a.capture.DenyEvents, a.guard.DenyEvents} {
		r, err := open()
		if err != nil {
			d.close()
			return fmt.Errorf("deny events: %w", err)
		}
		d.readers = append(d.readers, r)
		d.wg.Add(1)
		go d.read(r)
	}
	a.denyAudit = d
	return nil
}

func (d *denialAuditor) read(r *bpf.EventReader) {
	defer d.wg.Done()
	for {
		ev, err := r.Read()
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				d.a.log.Error("reading deny events stopped", "err", err)
			}
			return
		}
		d.record(ev)
	}
}

// record audits one event, attributed to the sandbox whose cgroup or veth
// it came from.
func (d *denialAuditor) record(ev bpf.DenyEvent) {
	if quietReasons[ev.Reason] {
		return
	}
	sb := d.a.sandboxOfEvent(ev)
	id := ""
	if sb != nil {
		id = sb.id
		sb.stats.captureDenied.Add(1)
	}
	ok, suppressed := d.limiter(id + "/" + ev.Reason).Allow()
	if !ok {
		return
	}
	detail := fmt.Sprintf("%s to %s from %s", protoOr(ev.Proto), ev.Dst, ev.Src)
	if suppressed > 0 {
		detail += fmt.Sprintf("; %d similar refusals not recorded before this one", suppressed)
	}
	rec := audit.Record{Time: ev.Time, Kind: KindCaptureDeny, Actor: id, Sandbox: id,
		Reason: ev.Reason, Detail: detail}
	d.a.appendAudit(rec)
	d.a.denials.add(api.Denial{Time: ev.Time, Sandbox: id, Kind: "capture", Host: ev.Dst.String(), Reason: ev.Reason})
}

// quietReasons are drops of a new link's own chatter (multicast listener
// reports, router solicitations' kin) that every sandbox makes by merely
// existing: counted in the metrics, not audited.
var quietReasons = map[string]bool{"drop_link_local": true}

func protoOr(p string) string {
	if p == "" {
		return "frame"
	}
	return p
}

func (d *denialAuditor) limiter(key string) *lograte.Limiter {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.limits[key]
	if !ok {
		if len(d.limits) > 4096 {
			clear(d.limits) // sandboxes come and go; a fresh limiter only lets one more through
		}
		l = lograte.New(captureDenyEvery)
		d.limits[key] = l
	}
	return l
}

// close stops the readers and waits for them.
func (d *denialAuditor) close() {
	for _, r := range d.readers {
		r.Close()
	}
	d.wg.Wait()
}

// sandboxOfEvent finds the sandbox a deny event came from: by cgroup for
// the socket programs, by veth for the guard and steering programs.
func (a *Agent) sandboxOfEvent(ev bpf.DenyEvent) *sandbox {
	for _, s := range a.sandboxes.list() {
		if ev.CgroupID != 0 && s.cgroupID == ev.CgroupID {
			return s
		}
		if ev.Ifindex != 0 && s.hostIndex == ev.Ifindex {
			return s
		}
	}
	return nil
}
