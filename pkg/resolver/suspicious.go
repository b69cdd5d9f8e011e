package resolver

import (
	"math"
	"strings"
)

// Thresholds of the names Stats counts as suspicious: longer than host
// names usually are, or with a label that looks like encoded data. Tools
// that tunnel data through DNS pack it into long labels of hex, base32 or
// base64; ordinary host names are short words.
const (
	maxNormalName  = 100 // bytes of a whole name, without the trailing dot
	maxNormalLabel = 40  // bytes of one label

	// A label of at least entropyMinLabel bytes that mixes letters and
	// digits with more than entropyThreshold bits of Shannon entropy per
	// byte looks encoded. On labels this short, entropy alone does not
	// separate encodings from words: a random 16-byte hex label scores
	// about 3.2 and "googleusercontent" 3.18. Words of that length rarely
	// contain digits, though, while random hex, base32 and base64 labels
	// nearly always do; with both tests, over 80% of random 16-byte labels
	// and over 95% of 20-byte ones count, and region-style names such as
	// "s3-website-us-east-1" are the usual false positives. Hex of a few
	// bytes of text is too regular to count (its digits repeat), though
	// longer runs of it do. The counters are a signal to look at, not a
	// verdict.
	entropyMinLabel  = 16
	entropyThreshold = 3.0
)

// inspect counts name, queried by sandbox, in Stats if it is suspicious.
func (r *Resolver) inspect(sandbox, name string) {
	long, encoded := suspicious(name)
	if long {
		r.stats.suspiciousLong.Add(1)
	}
	if encoded {
		r.stats.suspiciousEntropy.Add(1)
	}
	if long || encoded {
		r.log.Debug("dns query name suspicious",
			logSandbox, sandbox, logName, name, logLong, long, logEncoded, encoded)
	}
}

// suspicious reports whether a normalised name is unusually long, as a
// whole or in one label, and whether a label looks like encoded data.
func suspicious(name string) (long, encoded bool) {
	long = len(name) > maxNormalName
	for label := range strings.SplitSeq(name, ".") {
		long = long || len(label) > maxNormalLabel
		encoded = encoded || looksEncoded(label)
	}
	return long, encoded
}

// looksEncoded reports whether a lower-case label looks like hex, base32 or
// base64 rather than words; see entropyThreshold.
func looksEncoded(label string) bool {
	if len(label) < entropyMinLabel {
		return false
	}
	var counts [256]int
	digits, letters := 0, 0
	for i := range len(label) {
		c := label[i]
		counts[c]++
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z':
			letters++
		}
	}
	if digits == 0 || letters == 0 {
		return false
	}
	return entropy(&counts, len(label)) > entropyThreshold
}

// entropy returns the Shannon entropy, in bits per byte, of n bytes whose
// values occur counts times.
func entropy(counts *[256]int, n int) float64 {
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	return h
}
