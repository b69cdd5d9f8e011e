package placeholder

import (
	"strings"
	"testing"
)

func TestNewIsUniqueAndFound(t *testing.T) {
	a, err := New("sk-")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New("sk-")
	if a == b {
		t.Fatal("two placeholders are equal")
	}
	if !strings.HasPrefix(a, "sk-"+Marker) || len(a) != len("sk-")+len(Marker)+bodyLen {
		t.Fatalf("placeholder %q has the wrong shape", a)
	}
	toks := Find("Bearer " + a)
	if len(toks) != 1 || !toks[0].Valid || toks[0].ID != a[len("sk-"):] {
		t.Fatalf("Find = %+v", toks)
	}
}

func TestFind(t *testing.T) {
	full := Marker + strings.Repeat("a", bodyLen)
	tests := []struct {
		name  string
		in    string
		want  []string
		valid []bool
	}{
		{"none", "Bearer abc", nil, nil},
		{"one", "Bearer " + full, []string{full}, []bool{true}},
		{"two", full + "," + full, []string{full, full}, []bool{true, true}},
		{"truncated", "x" + Marker + "abc", []string{Marker + "abc"}, []bool{false}},
		{"bare marker", Marker, []string{Marker}, []bool{false}},
		{"longer body stops at 32", full + "bcd", []string{full}, []bool{true}},
		{"uppercase is not body", Marker + "ABC", []string{Marker}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Find(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("Find(%q) found %d tokens, want %d", tt.in, len(got), len(tt.want))
			}
			for i, tok := range got {
				if tok.ID != tt.want[i] || tok.Valid != tt.valid[i] || tt.in[tok.Start:tok.End] != tok.ID {
					t.Errorf("token %d = %+v, want %q valid=%v", i, tok, tt.want[i], tt.valid[i])
				}
			}
		})
	}
}
