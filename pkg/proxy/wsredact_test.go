package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	wsSecret = "sk-live-0123456789abcdef"
	wsPh     = "kgph_placeholder_for_the_ws_test"
)

// fakeConn is an upgraded connection: reads from the server's frames,
// writes recorded.
type fakeConn struct {
	io.Reader
	wrote  bytes.Buffer
	closed bool
}

func (c *fakeConn) Write(p []byte) (int, error) { return c.wrote.Write(p) }
func (c *fakeConn) Close() error                { c.closed = true; return nil }

// wsFrame is a frame as read back: fin, opcode, payload.
type wsFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrames parses unmasked frames until the input ends.
func readFrames(t *testing.T, b []byte) []wsFrame {
	t.Helper()
	var out []wsFrame
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("truncated frame header")
		}
		f := wsFrame{fin: b[0]&0x80 != 0, op: b[0] & 0x0f}
		if b[0]&0x70 != 0 || b[1]&0x80 != 0 {
			t.Fatalf("frame with reserved bits or mask: %x", b[:2])
		}
		n, hl := uint64(b[1]&0x7f), 2
		switch n {
		case 126:
			n, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
			if n <= 125 {
				t.Fatalf("length %d not in its shortest form", n)
			}
		case 127:
			n, hl = binary.BigEndian.Uint64(b[2:]), 10
		}
		f.payload = b[hl : hl+int(n)]
		b = b[hl+int(n):]
		out = append(out, f)
	}
	return out
}

// messages joins data frames into messages and checks the fragmentation
// rules; control frames are returned apart.
func messages(t *testing.T, frames []wsFrame) (msgs []string, ops []byte, control []wsFrame) {
	t.Helper()
	var cur []byte
	in := false
	for _, f := range frames {
		switch {
		case f.op >= 0x8:
			if !f.fin || len(f.payload) > 125 {
				t.Fatalf("bad control frame: fin %v, %d bytes", f.fin, len(f.payload))
			}
			control = append(control, f)
			continue
		case f.op == wsContinuation && !in, f.op != wsContinuation && in:
			t.Fatalf("fragmentation broken at opcode %#x", f.op)
		case f.op != wsContinuation:
			in = true
			ops = append(ops, f.op)
		}
		cur = append(cur, f.payload...)
		if f.fin {
			msgs, cur, in = append(msgs, string(cur)), nil, false
		}
	}
	if in {
		t.Fatal("the last message never ended")
	}
	return msgs, ops, control
}

func relay(t *testing.T, server []byte, oneByte bool) ([]byte, error) {
	t.Helper()
	var r io.Reader = bytes.NewReader(server)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols,
		Header: http.Header{"Upgrade": {"websocket"}}, Body: &fakeConn{Reader: r}}
	if err := redactUpgrade(resp, redactorFor(map[string]string{wsSecret: wsPh})); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(resp.Body)
}

func TestWebSocketFramesRedacted(t *testing.T) {
	auth := "Bearer " + wsSecret
	var big strings.Builder
	var bigWant strings.Builder
	for i := 0; big.Len() < 3*redactChunk; i++ {
		pad := strings.Repeat("b", 1000+i*37%900)
		big.WriteString(pad + wsSecret)
		bigWant.WriteString(pad + wsPh)
	}
	k := len("Bearer ") + 5 // inside the secret
	var in []byte
	in = appendWSFrame(in, true, wsText, []byte("one: "+auth))
	// A message in three fragments that split the secret, a ping between.
	in = appendWSFrame(in, false, wsText, []byte("two: "+auth[:k]))
	in = appendWSFrame(in, true, wsPing, []byte(wsSecret))
	in = appendWSFrame(in, false, wsContinuation, []byte(auth[k:k+3]))
	in = appendWSFrame(in, true, wsContinuation, []byte(auth[k+3:]+" end"))
	in = appendWSFrame(in, true, wsBinary, []byte(big.String()))
	in = appendWSFrame(in, true, wsText, nil)
	reason := strings.Repeat("r", 99) + wsSecret // 125 bytes with the code; longer once redacted
	in = appendWSFrame(in, true, wsClose, append([]byte{0x03, 0xe8}, reason...))

	for _, oneByte := range []bool{false, true} {
		out, err := relay(t, in, oneByte)
		if err != nil {
			t.Fatalf("relay (one byte per read %v): %v", oneByte, err)
		}
		if bytes.Contains(out, []byte(wsSecret)) {
			t.Fatal("the secret reached the client")
		}
		msgs, ops, control := messages(t, readFrames(t, out))
		want := []string{"one: Bearer " + wsPh, "two: Bearer " + wsPh + " end", bigWant.String(), ""}
		if len(msgs) != len(want) {
			t.Fatalf("%d messages, want %d", len(msgs), len(want))
		}
		for i := range want {
			if msgs[i] != want[i] {
				t.Errorf("message %d = %.80q (%d bytes), want %.80q (%d bytes)", i, msgs[i], len(msgs[i]), want[i], len(want[i]))
			}
		}
		if !bytes.Equal(ops, []byte{wsText, wsText, wsBinary, wsText}) {
			t.Errorf("opcodes %v", ops)
		}
		if len(control) != 2 || control[0].op != wsPing || string(control[0].payload) != wsPh {
			t.Fatalf("control frames %+v", control)
		}
		if c := control[1]; c.op != wsClose || !bytes.Equal(c.payload, []byte{0x03, 0xe8}) {
			t.Fatalf("close frame %x", c.payload)
		}
	}
}

// A frame the relay cannot search is refused, not passed on.
func TestWebSocketUnsearchableFramesRefused(t *testing.T) {
	good := appendWSFrame(nil, true, wsText, []byte("fine"))
	for name, frame := range map[string][]byte{
		"compressed (RSV1)":    {0xc1, 0x02, 'x', 'y'},
		"masked":               {0x81, 0x82, 1, 2, 3, 4, 'x', 'y'},
		"lone continuation":    appendWSFrame(nil, true, wsContinuation, []byte("x")),
		"fragmented control":   appendWSFrame(nil, false, wsPing, []byte("x")),
		"unknown opcode":       appendWSFrame(nil, true, 0x3, []byte("x")),
		"cut inside a payload": appendWSFrame(nil, true, wsText, []byte("abcdef"))[:5],
	} {
		t.Run(name, func(t *testing.T) {
			out, err := relay(t, append(append([]byte{}, good...), frame...), false)
			if err == nil {
				t.Fatal("relayed without an error")
			}
			if !errors.Is(err, errWSRedact) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v", err)
			}
			if !bytes.Equal(out, good) {
				t.Fatalf("relayed %x, want only the good frame before it", out)
			}
		})
	}
}

func TestWebSocketUpgradeChecks(t *testing.T) {
	red := redactorFor(map[string]string{wsSecret: wsPh})
	conn := &fakeConn{Reader: strings.NewReader("")}
	for name, h := range map[string]http.Header{
		"other protocol": {"Upgrade": {"h2c"}},
		"extension":      {"Upgrade": {"websocket"}, "Sec-Websocket-Extensions": {"permessage-deflate"}},
	} {
		resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: h, Body: conn}
		if err := redactUpgrade(resp, red); !errors.Is(err, errWSRedact) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
	// The client's frames go to the server untouched.
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{"Upgrade": {"websocket"}}, Body: conn}
	if err := redactUpgrade(resp, red); err != nil {
		t.Fatal(err)
	}
	rwc := resp.Body.(io.ReadWriteCloser)
	if _, err := rwc.Write([]byte("client frame")); err != nil || conn.wrote.String() != "client frame" {
		t.Fatalf("write: %v, server got %q", err, conn.wrote.String())
	}
	if rwc.Close(); !conn.closed {
		t.Fatal("Close did not close the connection")
	}
}

// Whatever a server sends, the relay does not panic, and what it passes
// on is well-formed frames without the secret.
func FuzzWebSocketRedact(f *testing.F) {
	f.Add(appendWSFrame(nil, true, wsText, []byte("x "+wsSecret)))
	f.Add(append(appendWSFrame(nil, false, wsBinary, []byte(wsSecret[:7])), appendWSFrame(nil, true, wsContinuation, []byte(wsSecret[7:]))...))
	f.Add([]byte{0x81, 0x7e, 0x00, 0x05, 'a'})
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _ := relay(t, in, false)
		if bytes.Contains(out, []byte(wsSecret)) {
			t.Fatalf("secret passed on: %x", out)
		}
		readFrames(t, out)
	})
}

// The relay's cost per byte of server frames: 16 KiB binary messages, one
// in eight holding the secret.
func BenchmarkWebSocketRedact(b *testing.B) {
	var in []byte
	payload := []byte(strings.Repeat("m", 16<<10))
	for i := range 64 {
		if i%8 == 0 {
			copy(payload[1000:], wsSecret)
		} else {
			copy(payload[1000:], strings.Repeat("m", len(wsSecret)))
		}
		in = appendWSFrame(in, true, wsBinary, payload)
	}
	red := redactorFor(map[string]string{wsSecret: wsPh})
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		resp := &http.Response{StatusCode: http.StatusSwitchingProtocols,
			Header: http.Header{"Upgrade": {"websocket"}}, Body: &fakeConn{Reader: bytes.NewReader(in)}}
		if err := redactUpgrade(resp, red); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
	}
}
