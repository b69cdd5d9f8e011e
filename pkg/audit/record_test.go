package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	east := time.FixedZone("east", 3600)
	tests := []struct {
		name string
		in   Record
		want Record
	}{
		{
			name: "stamps zero time",
			in:   Record{Kind: KindVaultCreate},
			want: Record{Kind: KindVaultCreate, Time: now},
		},
		{
			name: "converts to UTC",
			in:   Record{Kind: KindVaultCreate, Time: time.Date(2025, 1, 2, 4, 4, 5, 6, east)},
			want: Record{Kind: KindVaultCreate, Time: now},
		},
		{
			name: "cuts query",
			in:   Record{Kind: KindRequestInject, Time: now, Path: "/v1/x?token=s3cret&a=b"},
			want: Record{Kind: KindRequestInject, Time: now, Path: "/v1/x"},
		},
		{
			name: "drops log fields",
			in:   Record{Kind: KindVaultCreate, Time: now, Seq: 9, Prev: "p", Hash: "h"},
			want: Record{Kind: KindVaultCreate, Time: now},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.normalize(now); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("normalize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		rec  Record
		ok   bool
	}{
		{"fine", Record{Kind: KindVaultCreate, Time: now}, true},
		{"unknown kind is fine", Record{Kind: "x.y", Time: now}, true},
		{"no kind", Record{Time: now}, false},
		{"long kind", Record{Kind: Kind(strings.Repeat("k", maxKindBytes+1)), Time: now}, false},
		{"year 10000", Record{Kind: KindVaultCreate, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, false},
		{"too much text", Record{Kind: KindVaultCreate, Time: now, Detail: strings.Repeat("d", maxTextBytes+1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rec.validate()
			if tt.ok != (err == nil) {
				t.Fatalf("validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestLineIsMarshal checks the claim appendLine's doc makes: its output is
// exactly json.Marshal of the whole record, and decodes back to it.
func TestLineIsMarshal(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"minimal", Record{Kind: KindVaultCreate}},
		{"full", sample(3)},
		{"html escapes", Record{Kind: KindRequestDeny, Reason: `<a href="x">&</a>`}},
		{"newline and tab", Record{Kind: KindRequestDeny, Detail: "a\nb\tc\r"}},
		{"unicode", Record{Kind: KindRequestDeny, Detail: "é 日本 \u2028 \U0001F600"}},
		{"invalid utf-8", Record{Kind: KindRequestDeny, Detail: "a\xffb"}},
		{"nanoseconds", Record{Kind: KindVaultCreate, Time: baseTime.Add(123456789)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rec.normalize(baseTime)
			r.Seq, r.Prev, r.Hash = 4, genesis, strings.Repeat("ab", hashSize)

			body, err := encodeBody(r)
			if err != nil {
				t.Fatal(err)
			}
			line := appendLine(nil, body, r.Hash)
			want, _ := json.Marshal(r)
			if !bytes.Equal(line, append(want, '\n')) {
				t.Fatalf("line\n%s\nwant\n%s", line, want)
			}

			got, gotBody, fail := decodeLine(line)
			if fail != nil {
				t.Fatalf("decodeLine: %v", fail)
			}
			if !bytes.Equal(gotBody, body) {
				t.Errorf("body changed in round trip")
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("decoded %+v, want %+v", got, r)
			}
		})
	}
}

// TestDecodeLineRejects feeds lines that hold the same record as a
// canonical one but are spelled differently.
func TestDecodeLineRejects(t *testing.T) {
	r := sample(1).normalize(baseTime)
	r.Seq, r.Prev, r.Hash = 1, genesis, strings.Repeat("cd", hashSize)
	body, _ := encodeBody(r)
	good := string(appendLine(nil, body, r.Hash))
	if _, _, fail := decodeLine([]byte(good)); fail != nil {
		t.Fatalf("canonical line rejected: %v", fail)
	}

	tests := []struct {
		name string
		line string
		want Reason
	}{
		{"space after brace", strings.Replace(good, "{", "{ ", 1), ReasonNotCanonical},
		{"space before newline", strings.TrimSuffix(good, "\n") + " \n", ReasonNotCanonical},
		{"crlf", strings.TrimSuffix(good, "\n") + "\r\n", ReasonNotCanonical},
		{"key case", strings.Replace(good, `"vault"`, `"Vault"`, 1), ReasonNotCanonical},
		{"escaped letter", strings.Replace(good, `"prod"`, `"\u0070rod"`, 1), ReasonNotCanonical},
		{"offset instead of Z", strings.Replace(good, `00Z"`, `00+00:00"`, 1), ReasonNotCanonical},
		{"duplicate key", strings.Replace(good, `{"seq":1,`, `{"seq":1,"seq":1,`, 1), ReasonNotCanonical},
		{"reordered", strings.Replace(good, `"actor":"uid:0","sandbox":"sb-1"`, `"sandbox":"sb-1","actor":"uid:0"`, 1), ReasonNotCanonical},
		{"second object", strings.TrimSuffix(good, "\n") + "{}\n", ReasonNotCanonical},
		{"unknown field", strings.Replace(good, `{"seq":1,`, `{"seq":1,"x":1,`, 1), ReasonUnparsable},
		{"not json", "hello\n", ReasonUnparsable},
		{"empty line", "\n", ReasonUnparsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.line == good {
				t.Fatal("edit did not change the line")
			}
			_, _, fail := decodeLine([]byte(tt.line))
			if fail == nil || fail.Reason != tt.want {
				t.Errorf("decodeLine(%q) = %v, want %q", tt.line, fail, tt.want)
			}
		})
	}
}
