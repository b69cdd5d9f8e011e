package testworld

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"time"
)

// wsGUID is the fixed key suffix of the WebSocket handshake (RFC 6455).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// ReflectBinaryCopies is how many times /_kg/ws-reflect's binary message
// holds the Authorization value.
const ReflectBinaryCopies = 40

// serveWebSocketReflect accepts a WebSocket handshake and sends the
// request's Authorization value back as raw frames, the ways an upstream
// could hand a credential back to a client through a relay:
//
//  1. a text message "one: AUTH" in one frame;
//  2. a text message "two: AUTH end" in three fragments that split AUTH
//     inside its secret, with a ping carrying AUTH between them;
//  3. a binary message of about 200 KiB holding AUTH ReflectBinaryCopies
//     times, in one frame;
//  4. a close frame (1000) whose reason is AUTH.
//
// It then waits for the client's close frame and hangs up.
func serveWebSocketReflect(rw http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + wsGUID))
	conn, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	w := brw.Writer
	io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")

	k := min(len(auth), strings.IndexByte(auth, ' ')+6) // inside the secret
	var big strings.Builder
	for i := range ReflectBinaryCopies {
		big.WriteString(strings.Repeat("z", 4000+i*131) + auth)
	}
	reason := auth[:min(len(auth), 123)]
	for _, f := range []struct {
		fin     bool
		op      byte
		payload string
	}{
		{true, 0x1, "one: " + auth},
		{false, 0x1, "two: " + auth[:k]},
		{true, 0x9, auth[:min(len(auth), 125)]},
		{false, 0x0, auth[k:min(len(auth), k+3)]},
		{true, 0x0, auth[min(len(auth), k+3):] + " end"},
		{true, 0x2, big.String()},
		{true, 0x8, "\x03\xe8" + reason},
	} {
		writeWSFrame(w, f.fin, f.op, f.payload)
	}
	if w.Flush() != nil {
		return
	}
	// The client answers the close; read until it has.
	readUntilClose(brw.Reader)
}

// writeWSFrame writes one unmasked frame.
func writeWSFrame(w *bufio.Writer, fin bool, op byte, payload string) {
	h := []byte{op}
	if fin {
		h[0] |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		h = append(h, byte(n))
	case n <= 0xffff:
		h = binary.BigEndian.AppendUint16(append(h, 126), uint16(n))
	default:
		h = binary.BigEndian.AppendUint64(append(h, 127), uint64(n))
	}
	w.Write(h)
	w.WriteString(payload)
}

// readUntilClose reads the client's (masked) frames until its close frame
// or the end of the connection.
func readUntilClose(r *bufio.Reader) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if h[1]&0x80 != 0 {
			n += 4 // masking key
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil || h[0]&0x0f == 0x8 {
			return
		}
	}
}
