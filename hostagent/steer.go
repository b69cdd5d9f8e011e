//go:build linux

package hostagent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"

	"github.com/keygate/keygate/bpf"
	"github.com/keygate/keygate/pkg/resolver"
	"github.com/keygate/keygate/pkg/tproxy"
)

// Ports of the tc capture mode's transparent sockets on the service
// address. DNS over UDP must be answered from port 53 itself: a reply
// carries its socket's port, and a connected client drops one from any
// other.
const (
	steerProxyPort  = 15002
	steerDNSTCPPort = 15054
	steerDNSUDPPort = 53
)

// steerTable is this agent's policy routing table for steered packets:
// agents sharing a host (one per cgroup parent) get their own, so one
// stopping leaves the other's routing in place.
func (a *Agent) steerTable() uint32 {
	h := fnv.New32a()
	h.Write([]byte(a.cfg.CgroupParent))
	return bpf.SteerTable + h.Sum32()%1000
}

// startSteering prepares tc capture: transparent listeners for the proxy
// and the resolver on the service addresses, their sockets in the
// steering program's map, and the policy route that delivers steered
// packets with foreign destinations locally. If any step fails, tc capture
// is unavailable (sandboxes asking for it are refused) but the agent runs.
func (a *Agent) startSteering() error {
	if err := a.setupSteering(); err != nil {
		a.log.Warn("tc capture unavailable", "err", err)
		return nil
	}
	a.tcOK = true
	return nil
}

func (a *Agent) setupSteering() error {
	var socks bpf.SteerSockets
	for _, svc := range []netip.Addr{a.pool.service(), a.pool.service6()} {
		if !svc.IsValid() {
			continue
		}
		proxyLn, err := tproxy.ListenTCP(netip.AddrPortFrom(svc, steerProxyPort))
		if err != nil {
			return err
		}
		a.listeners = append(a.listeners, proxyLn)
		dnsLn, err := tproxy.ListenTCP(netip.AddrPortFrom(svc, steerDNSTCPPort))
		if err != nil {
			return err
		}
		a.listeners = append(a.listeners, dnsLn)
		udp, err := tproxy.ListenUDP(netip.AddrPortFrom(svc, steerDNSUDPPort))
		if err != nil {
			return fmt.Errorf("DNS on %s port 53 (something else holds it?): %w", svc, err)
		}
		a.udp = append(a.udp, udp)
		if svc.Is4() {
			socks.Proxy4, socks.DNSTCP4, socks.DNSUDP4 = proxyLn, dnsLn, udp
		} else {
			socks.Proxy6, socks.DNSTCP6, socks.DNSUDP6 = proxyLn, dnsLn, udp
		}
		a.serveSteered(proxyLn, dnsLn, udp)
	}
	if err := a.guard.SetSteerSockets(socks); err != nil {
		return err
	}
	undo, err := tproxy.Install(bpf.SteerMark, a.steerTable())
	if err != nil {
		return err
	}
	a.steerUndo = undo
	return nil
}

// serveSteered serves one address family's transparent sockets.
func (a *Agent) serveSteered(proxyLn, dnsLn *net.TCPListener, udp *net.UDPConn) {
	go func() {
		if err := a.proxy.ServeSteered(proxyLn); err != nil {
			a.log.Error("steered proxy listener stopped", "err", err)
		}
	}()
	go func() {
		if err := a.resolver.Serve(udp, dnsLn); err != nil && !errors.Is(err, resolver.ErrClosed) {
			a.log.Error("steered resolver stopped", "err", err)
		}
	}()
}

// tcReady reports whether tc capture can be used.
func (a *Agent) tcReady() bool { return a.tcOK }
