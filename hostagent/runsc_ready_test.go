//go:build linux

package hostagent

import (
	"os"
	"strings"
	"testing"
)

// A persistent runsc sandbox is up once its first process says so; if it
// ends first, what it wrote is the error.
func TestWaitRunscReady(t *testing.T) {
	for _, tt := range []struct{ wrote, wantErr string }{
		{runscReady + "\n", ""},
		{"keygate: sandbox setup: write /etc/resolv.conf: read-only file system\n", "read-only file system"},
		{"", "EOF"},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString(tt.wrote)
		w.Close()
		err = waitRunscReady(r)
		r.Close()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.wrote, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: got %v, want an error with %q", tt.wrote, err, tt.wantErr)
		}
	}
}
