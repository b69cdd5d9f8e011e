// Command testworld runs a keygate test world until interrupted, for demos
// and for poking at the world by hand (`ip netns exec <name> ...`).
//
//	go run ./scripts/testworld -name kgdemo   # as root
//
// It prints one JSON line describing the world to stdout and, on SIGINT or
// SIGTERM, a summary of what each world host received to stderr. The summary
// shows Authorization header values in full: the demo uses it to show that
// the API received the real (throwaway) key while nothing else did. Never
// point real credentials at a test world.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keygate/keygate/pkg/testworld"
)

// worldInfo is the JSON line printed at start. The IPv6 and stand-in fields
// are left out when the world has none.
type worldInfo struct {
	Name      string `json:"name"`
	Zone      string `json:"zone"`
	HostIP    string `json:"host_ip"`
	DNS       string `json:"dns"`
	API       string `json:"api"`
	Attacker  string `json:"attacker"`
	Other     string `json:"other"`
	HostIP6   string `json:"host_ip6,omitempty"`
	DNS6      string `json:"dns6,omitempty"`
	API6      string `json:"api6,omitempty"`
	Attacker6 string `json:"attacker6,omitempty"`
	Other6    string `json:"other6,omitempty"`
	Metadata  string `json:"metadata,omitempty"`
	StrayDNS  string `json:"stray_dns,omitempty"`
	CAFile    string `json:"ca_file"`
}

func main() {
	name := flag.String("name", "", "network namespace name (at most 8 characters; default random)")
	prefix := flag.String("prefix", "",
		"world IPv4 subnet (default "+testworld.DefaultPrefix.String()+")")
	prefix6 := flag.String("prefix6", "",
		"world IPv6 subnet (default "+testworld.DefaultPrefix6.String()+")")
	noIPv6 := flag.Bool("no-ipv6", false, "leave IPv6 out of the world")
	noStandIns := flag.Bool("no-stand-ins", false,
		"leave out the metadata server and stray DNS sink, so the world can run beside another")
	zone := flag.String("zone", "", "DNS zone served (default "+testworld.DefaultZone+")")
	logRequests := flag.Bool("log", false, "print each request to stderr as it arrives")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("testworld: ")

	// Build the config from the flags.
	cfg := testworld.Config{Name: *name, Zone: *zone, NoIPv6: *noIPv6, NoStandIns: *noStandIns}
	var err error
	if cfg.Prefix, err = parsePrefix("prefix", *prefix); err != nil {
		log.Fatal(err)
	}
	if cfg.Prefix6, err = parsePrefix("prefix6", *prefix6); err != nil {
		log.Fatal(err)
	}
	if *logRequests {
		cfg.OnRequest = func(server string, r testworld.Request) {
			printRequest(os.Stderr, server, r)
		}
	}

	// Start the world and describe it on stdout.
	w, err := testworld.Start(cfg)
	if err != nil {
		log.Fatalf("start world: %v", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(describe(w)); err != nil {
		log.Printf("write world description: %v", err)
	}

	// Serve until interrupted.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	<-ctx.Done()
	stop()

	// Report what the world received, then tear it down.
	printSummary(os.Stderr, w)
	if err := w.Close(); err != nil {
		log.Fatalf("close world: %v", err)
	}
}

// parsePrefix parses the value of flag name; empty means the zero prefix.
func parsePrefix(name, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("parse -%s: %w", name, err)
	}
	return p, nil
}

// describe returns the JSON description of w.
func describe(w *testworld.World) worldInfo {
	return worldInfo{
		Name:      w.Name,
		Zone:      w.Zone,
		HostIP:    w.HostIP.String(),
		DNS:       w.DNS.String(),
		API:       w.API.String(),
		Attacker:  w.Attacker.String(),
		Other:     w.Other.String(),
		HostIP6:   addrString(w.HostIP6),
		DNS6:      addrPortString(w.DNS6),
		API6:      addrString(w.API6),
		Attacker6: addrString(w.Attacker6),
		Other6:    addrString(w.Other6),
		Metadata:  addrString(w.Metadata),
		StrayDNS:  addrString(w.StrayDNS),
		CAFile:    w.CAFile,
	}
}

// addrString returns a as text, or "" for the zero address.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// addrPortString returns ap as text, or "" for the zero address.
func addrPortString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

// printSummary writes what each world host received.
func printSummary(out io.Writer, w *testworld.World) {
	hosts := []string{w.APIHost(), w.API6Host(), w.OtherHost(), w.AttackerHost(), "metadata"}
	for _, host := range hosts {
		reqs := w.Requests(host)
		fmt.Fprintf(out, "%s: %d request(s)\n", host, len(reqs))
		for _, r := range reqs {
			printRequest(out, host, r)
		}
	}

	datagrams := w.Datagrams()
	fmt.Fprintf(out, "sinks: %d datagram(s) or stream(s)\n", len(datagrams))
	for _, d := range datagrams {
		fmt.Fprintf(out, "  %s %s -> %s: %q\n", d.Network, d.Src, d.Dst, truncate(d.Payload, 80))
	}
	fmt.Fprintf(out, "dns: %d question(s)\n", len(w.DNSQueries()))
}

// printRequest writes one request on one line, Authorization values included.
func printRequest(out io.Writer, server string, r testworld.Request) {
	auth := "-"
	if vs := r.Header.Values("Authorization"); len(vs) > 0 {
		auth = strings.Join(vs, ", ")
	}
	fmt.Fprintf(out, "  [%s] %s %s %s%s %s authorization=%q\n",
		r.Time.Format("15:04:05.000"), server, r.Method, r.Host, r.Path, r.Proto, auth)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
