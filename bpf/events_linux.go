//go:build linux

package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// EventReader reads the DenyEvents of a CgroupCapture or a Guard from
// their ring buffer.
//
// A ring has one read position, kept in the ring itself, so readers of the
// same ring (pinned, it may be read from another process) take events from
// each other: have one reader per ring.
type EventReader struct {
	ring    *ringbuf.Reader
	reasons [2][]string // names of deny_event.reason, by deny_event.steer
	boot    int64       // wall-clock time at boot, ns since the epoch

	mu  sync.Mutex
	rec ringbuf.Record // the buffer Read reuses; guarded by mu
}

// familyARP is deny_event.family of an ARP frame (EVENT_FAMILY_ARP in
// events.h).
const familyARP = 0xff

// deny_event is one struct in events.h, used by both objects.
var _ = cgroupDenyEvent(guardDenyEvent{})

// denyEventSize is the size of a struct deny_event.
var denyEventSize = binary.Size(cgroupDenyEvent{})

// newEventReader reads the ring m, naming reasons from reasons, and from
// steerReasons for events of the steering program.
func newEventReader(m *ebpf.Map, reasons, steerReasons []string) (*EventReader, error) {
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	ring, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("read deny events: %w", kernelErr(err))
	}
	return &EventReader{ring: ring, reasons: [2][]string{reasons, steerReasons}, boot: boot}, nil
}

// bootTime returns the wall-clock time at which CLOCK_BOOTTIME, the clock
// of bpf_ktime_get_boot_ns, was zero. Unlike CLOCK_MONOTONIC it counts time
// spent suspended, so the offset holds across a suspend.
func bootTime() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return time.Now().UnixNano() - ts.Nano(), nil
}

// Read returns the next event, oldest first. It blocks until there is one
// or until Close is called, after which it returns an error wrapping
// os.ErrClosed. Events the ring has no room for, because they come faster
// than they are read, are lost and counted as event_lost.
func (r *EventReader) Read() (DenyEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	if err := r.ring.ReadInto(&r.rec); err != nil {
		return DenyEvent{}, fmt.Errorf("read deny event: %w", err)
	}
	return r.decode(r.rec.RawSample)
}

func (r *EventReader) decode(raw []byte) (DenyEvent, error) {
	var ev cgroupDenyEvent
	if len(raw) != denyEventSize {
		return DenyEvent{}, fmt.Errorf("deny event of %d bytes, want %d", len(raw), denyEventSize)
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &ev); err != nil {
		return DenyEvent{}, fmt.Errorf("decode deny event: %w", err)
	}

	out := DenyEvent{
		Time:     time.Unix(0, r.boot+int64(ev.KtimeNs)),
		CgroupID: ev.CgroupId,
		Ifindex:  int(ev.Ifindex),
		Reason:   r.reasonName(ev.Steer, ev.Reason),
		Proto:    protoName(ev.Family, ev.L4proto),
	}
	if out.Proto != "" {
		out.Src = netip.AddrPortFrom(netip.AddrFrom16(ev.Src).Unmap(), ev.Sport)
		out.Dst = netip.AddrPortFrom(netip.AddrFrom16(ev.Dst).Unmap(), ev.Dport)
	}
	return out, nil
}

func (r *EventReader) reasonName(steer uint8, reason uint16) string {
	if int(steer) < len(r.reasons) && int(reason) < len(r.reasons[steer]) {
		return r.reasons[steer][reason]
	}
	return fmt.Sprintf("unknown(%d/%d)", steer, reason)
}

// protoNames names the IP protocols (IANA's keywords, in lower case) a
// sandbox is likeliest to try, by number.
var protoNames = map[uint8]string{
	unix.IPPROTO_HOPOPTS:  "hopopt",
	unix.IPPROTO_ICMP:     "icmp",
	unix.IPPROTO_IGMP:     "igmp",
	unix.IPPROTO_TCP:      "tcp",
	unix.IPPROTO_UDP:      "udp",
	unix.IPPROTO_DCCP:     "dccp",
	unix.IPPROTO_IPV6:     "ipv6",
	unix.IPPROTO_ROUTING:  "ipv6-route",
	unix.IPPROTO_FRAGMENT: "ipv6-frag",
	unix.IPPROTO_GRE:      "gre",
	unix.IPPROTO_ESP:      "esp",
	unix.IPPROTO_AH:       "ah",
	unix.IPPROTO_ICMPV6:   "icmpv6",
	unix.IPPROTO_NONE:     "ipv6-nonxt",
	unix.IPPROTO_DSTOPTS:  "ipv6-opts",
	unix.IPPROTO_SCTP:     "sctp",
	unix.IPPROTO_UDPLITE:  "udplite",
	unix.IPPROTO_RAW:      "raw", // a socket protocol with no IP number
}

// protoName names a deny_event's protocol: see DenyEvent.Proto.
func protoName(family, proto uint8) string {
	switch family {
	case unix.AF_INET, unix.AF_INET6:
	case familyARP:
		return "arp"
	default:
		return ""
	}
	if name, ok := protoNames[proto]; ok {
		return name
	}
	return strconv.Itoa(int(proto))
}

// Close stops the reader, interrupting a Read in progress.
func (r *EventReader) Close() error {
	return r.ring.Close()
}

// DenyEvents returns a reader of the refusals the cgroup programs report:
// those counted as deny_udp, deny_other, deny_udp6, deny_other6,
// deny_no_ip6 and skb_drop_*. They are kept in a ring of 256 KiB, about
// 3600 events; with a PinDir the ring is pinned, so events from while no
// agent ran wait there for the next. Close the reader as well as c.
func (c *CgroupCapture) DenyEvents() (*EventReader, error) {
	return newEventReader(c.objs.DenyEvents, reasonNames[:], nil)
}

// DenyEvents returns a reader of the frames the guard and the steering
// program drop: those counted as drop_* and those of SteerCounters counted
// as steer_drop_*, steer_no_listener and steer_assign_failed. The ring is
// kept as CgroupCapture.DenyEvents says. Close the reader as well as g.
func (g *Guard) DenyEvents() (*EventReader, error) {
	return newEventReader(g.objs.GuardDenyEvents, guardReasonNames[:], steerReasonNames[:])
}
