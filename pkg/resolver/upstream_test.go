package resolver

import (
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func TestChainAddrs(t *testing.T) {
	tests := []struct {
		name    string
		answer  []string
		qname   string
		want    []string
		wantTTL uint32
	}{
		{
			name:    "direct",
			answer:  []string{"a.test. 300 IN A 192.0.2.1", "a.test. 200 IN A 192.0.2.2"},
			qname:   "a.test.",
			want:    []string{"192.0.2.1", "192.0.2.2"},
			wantTTL: 200,
		},
		{
			name: "chain out of order",
			answer: []string{
				"c.test. 300 IN A 192.0.2.3",
				"b.test. 50 IN CNAME c.test.",
				"a.test. 100 IN CNAME b.test.",
			},
			qname:   "a.test.",
			want:    []string{"192.0.2.3"},
			wantTTL: 50,
		},
		{
			name:    "case-insensitive owners",
			answer:  []string{"A.Test. 60 IN CNAME B.TEST.", "b.test. 300 IN A 192.0.2.4"},
			qname:   "a.TEST.",
			want:    []string{"192.0.2.4"},
			wantTTL: 60,
		},
		{
			name:   "records off the chain ignored",
			answer: []string{"a.test. 60 IN CNAME b.test.", "a.test. 60 IN A 192.0.2.9", "x.test. 60 IN A 192.0.2.8"},
			qname:  "a.test.",
		},
		{
			name:    "duplicates collapsed",
			answer:  []string{"a.test. 60 IN A 192.0.2.1", "a.test. 60 IN A 192.0.2.1"},
			qname:   "a.test.",
			want:    []string{"192.0.2.1"},
			wantTTL: 60,
		},
		{
			name:   "loop ends",
			answer: []string{"a.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME a.test."},
			qname:  "a.test.",
		},
		{
			name:   "other types ignored",
			answer: []string{"a.test. 60 IN AAAA 2001:db8::1", "a.test. 60 IN TXT \"x\""},
			qname:  "a.test.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answer []dns.RR
			for _, s := range tt.answer {
				answer = append(answer, mustRR(s))
			}
			addrs, ttl := chainAddrs(answer, tt.qname, dns.TypeA)

			var got []string
			for _, a := range addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("addresses %q, want %q", got, tt.want)
			}
			if ttl != tt.wantTTL {
				t.Errorf("TTL %d, want %d", ttl, tt.wantTTL)
			}
			for _, a := range addrs {
				if a != a.Unmap() || !a.Is4() {
					t.Errorf("address %v is not plain IPv4", a)
				}
			}
		})
	}
}
