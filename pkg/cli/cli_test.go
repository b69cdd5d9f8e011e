package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantTail  []string
		wantVault []string
	}{
		{"flags first", []string{"--vault", "a", "x", "y"}, []string{"x", "y"}, nil, []string{"a"}},
		{"flags between", []string{"x", "--vault", "a", "y"}, []string{"x", "y"}, nil, []string{"a"}},
		{"tail after --", []string{"--vault", "a", "--", "sh", "-c", "--vault"}, nil, []string{"sh", "-c", "--vault"}, []string{"a"}},
		{"positional then tail", []string{"p", "--", "q"}, []string{"p"}, []string{"q"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var vaults stringList
			fs.Var(&vaults, "vault", "")
			pos, tail, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || !slices.Equal(tail, tt.wantTail) || !slices.Equal(vaults, tt.wantVault) {
				t.Errorf("pos %q tail %q vaults %q", pos, tail, vaults)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"2026-12-01T00:00:00Z", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"-5m", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, now)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestReportIsOneLine(t *testing.T) {
	var buf bytes.Buffer
	code := report(&buf, 0, errors.New("first\nsecond\tthird"))
	if code != ExitFailure || strings.Count(buf.String(), "\n") != 1 || !strings.HasPrefix(buf.String(), "keygate: first second third") {
		t.Errorf("report: code %d, output %q", code, buf.String())
	}
	buf.Reset()
	if code := report(&buf, 0, usageError("cred: want add")); code != ExitUsage || buf.String() != "keygate: cred: want add\n" {
		t.Errorf("usage report: code %d, output %q", code, buf.String())
	}
}

func TestHelpExitsZero(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{{"--help"}, {"cred", "add", "--help"}, {"run", "-h"}, {"audit", "--help"}} {
		out.Reset()
		errb.Reset()
		if code := Main(args, nil, &out, &errb); code != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		if !strings.Contains(out.String(), "usage: keygate") {
			t.Errorf("%v: no usage in %q", args, out.String())
		}
	}
}
