package resolver

import (
	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/domain"
)

// Reasons a query is denied, as found in Denial.Reason and in the reason
// attribute of denial records.
const (
	// ReasonUnknownSource: the query came from an address no sandbox has.
	ReasonUnknownSource = "unknown source"

	// ReasonNameNotAllowed: in allowlist mode, the policy does not list the
	// name.
	ReasonNameNotAllowed = "name not allowed"

	// ReasonTypeNotAllowed: in open mode, a record type other than A or
	// AAAA was asked for a name the policy does not list.
	ReasonTypeNotAllowed = "type not allowed"

	// ReasonInvalidName: in open mode, an unlisted name that is not a
	// plausible host name (see domain.ValidateName), such as one with
	// arbitrary bytes in its labels.
	ReasonInvalidName = "invalid name"
)

// Denial describes one denied query, for Config.OnDeny.
type Denial struct {
	Sandbox string // the sandbox ID; empty for ReasonUnknownSource
	Name    string // the normalised query name; empty if there was none
	Type    string // the query type, such as "TXT"; empty if there was none
	Reason  string // one of the Reason constants

	// Suppressed counts the denials of this sandbox not reported, to the
	// log or OnDeny, since the previous one was, because they exceeded
	// Config.RecordRate.
	Suppressed int
}

// decide applies pol to a query for name, normalised, of type qtype. It
// returns the reason the query is denied and the rcode to deny it with, or
// an empty reason if the query may be answered.
func decide(pol Policy, name string, qtype uint16) (rcode int, reason string) {
	switch {
	case domain.MatchAny(pol.Allowed, name):
		return dns.RcodeSuccess, ""
	case !pol.Open:
		return dns.RcodeNameError, ReasonNameNotAllowed
	case qtype != dns.TypeA && qtype != dns.TypeAAAA:
		return dns.RcodeRefused, ReasonTypeNotAllowed
	case domain.ValidateName(name) != nil:
		return dns.RcodeNameError, ReasonInvalidName
	}
	return dns.RcodeSuccess, ""
}
