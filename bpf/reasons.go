package bpf

// reasonNames names the exit reasons counted by the C programs, indexed by
// their enum reason value.
var reasonNames = []string{
	"tcp_redirect",
	"dns_redirect",
	"loopback",
	"deny_udp",
	"deny_other",
	"dns_reply",
	"conn_published",
	"conn_unknown",
}
