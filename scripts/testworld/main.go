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

// worldInfo is the JSON line printed at start.
type worldInfo struct {
	Name     string `json:"name"`
	Zone     string `json:"zone"`
	HostIP   string `json:"host_ip"`
	DNS      string `json:"dns"`
	API      string `json:"api"`
	Attacker string `json:"attacker"`
	Other    string `json:"other"`
	CAFile   string `json:"ca_file"`
}

func main() {
	name := flag.String("name", "", "network namespace name (at most 8 characters; default random)")
	prefix := flag.String("prefix", "",
		"world IPv4 subnet (default "+testworld.DefaultPrefix.String()+")")
	zone := flag.String("zone", "", "DNS zone served (default "+testworld.DefaultZone+")")
	logRequests := flag.Bool("log", false, "print each request to stderr as it arrives")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("testworld: ")

	// Build the config from the flags.
	cfg := testworld.Config{Name: *name, Zone: *zone}
	if *prefix != "" {
		p, err := netip.ParsePrefix(*prefix)
		if err != nil {
			log.Fatalf("parse -prefix: %v", err)
		}
		cfg.Prefix = p
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
	info := worldInfo{
		Name:     w.Name,
		Zone:     w.Zone,
		HostIP:   w.HostIP.String(),
		DNS:      w.DNS.String(),
		API:      w.API.String(),
		Attacker: w.Attacker.String(),
		Other:    w.Other.String(),
		CAFile:   w.CAFile,
	}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
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

// printSummary writes what each world host received.
func printSummary(out io.Writer, w *testworld.World) {
	for _, host := range []string{w.APIHost(), w.OtherHost(), w.AttackerHost()} {
		reqs := w.Requests(host)
		fmt.Fprintf(out, "%s: %d request(s)\n", host, len(reqs))
		for _, r := range reqs {
			printRequest(out, host, r)
		}
	}

	datagrams := w.Datagrams()
	fmt.Fprintf(out, "attacker sinks: %d datagram(s) or stream(s)\n", len(datagrams))
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
