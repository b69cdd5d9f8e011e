package resolver

import (
	"strings"
	"testing"
)

func TestSuspicious(t *testing.T) {
	tests := []struct {
		name        string
		wantLong    bool
		wantEncoded bool
	}{
		{"api.example.test", false, false},
		{"googleusercontent.com", false, false},
		{"objects.githubusercontent.com", false, false},
		{"generativelanguage.googleapis.com", false, false},
		{"production-api-gateway.example.com", false, false},
		{"d1a2b3c4.cloudfront.net", false, false}, // hex, but short
		{"ip-10-0-12-200.ec2.internal", false, false},

		{"7f3a9c01be42d856.exfil.test", false, true},                       // hex of random bytes
		{"4a6f686e20446f6520736179732068656c6c6f.exfil.test", false, true}, // hex of text
		{"4a6f686e20446f65.exfil.test", false, false},                      // hex of short text: too regular
		{"mzxw6ytboi3tmnrtgq2dm.exfil.test", false, true},                  // base32
		{"bm90igegag9zdg5hbwu0xq.exfil.test", false, true},                 // base64, lowered
		{strings.Repeat("a", 41) + ".exfil.test", true, false},             // a long label of one letter
		{strings.Repeat("abcd.", 21) + "test", true, false},                // 109 bytes in short labels
		{"0123456789abcdef0123456789abcdef0123456789abcdef.exfil.test", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			long, encoded := suspicious(tt.name)
			if long != tt.wantLong || encoded != tt.wantEncoded {
				t.Errorf("suspicious = long %v, encoded %v; want %v, %v", long, encoded, tt.wantLong, tt.wantEncoded)
			}
		})
	}
}

func TestEntropy(t *testing.T) {
	tests := []struct {
		s    string
		want float64
	}{
		{"aaaaaaaa", 0},
		{"abababab", 1},
		{"abcdabcd", 2},
		{"0123456789abcdef", 4},
	}
	for _, tt := range tests {
		var counts [256]int
		for i := range len(tt.s) {
			counts[tt.s[i]]++
		}
		if got := entropy(&counts, len(tt.s)); got != tt.want {
			t.Errorf("entropy(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
