package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestRelayCopiesHeads(t *testing.T) {
	r := &relay{placeholder: []byte("PH"), secret: []byte("real")}
	in := bufio.NewReader(strings.NewReader(
		"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer PH\r\nX-Other: PH\r\n\r\n" +
			"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"))
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	for range 2 {
		if err := r.copyRequestHead(w, in); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	want := "GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer real\r\nX-Other: PH\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	if out.String() != want {
		t.Fatalf("relayed %q, want %q", out.String(), want)
	}

	if err := r.copyRequestHead(w, bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))); err == nil {
		t.Fatal("a request with a body was relayed")
	}
}

func TestRelayResponseLength(t *testing.T) {
	for _, c := range []struct {
		head string
		n    int64
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", 12, true},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false},
	} {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		n, err := copyResponseHead(w, bufio.NewReader(strings.NewReader(c.head)))
		if (err == nil) != c.ok || n != c.n {
			t.Errorf("%q: got %d, %v; want %d, ok %v", c.head, n, err, c.n, c.ok)
		}
		w.Flush()
		if c.ok && out.String() != c.head {
			t.Errorf("%q copied as %q", c.head, out.String())
		}
	}
}
