package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// WebSocket frame opcodes (RFC 6455, section 5.2).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xa
)

// wsMaxControl is the largest control frame payload.
const wsMaxControl = 125

// errWSRedact is why an upgraded connection that carried a secret is cut:
// its frames could not be searched for it.
var errWSRedact = errors.New("websocket frames cannot be redacted")

// redactUpgrade makes a connection upgraded after a request that carried a
// secret relay its server-to-client WebSocket frames redacted. Anything it
// cannot search is refused instead: another protocol, a negotiated
// extension (permessage-deflate would hide the secret; the request went
// out without the offer), or, later, a frame that breaks the protocol.
func redactUpgrade(resp *http.Response, red *redactor) error {
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("%w: upgrade to %q after a request with a credential: only WebSocket is relayed redacted",
			errWSRedact, resp.Header.Get("Upgrade"))
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return fmt.Errorf("%w: upstream negotiated extension %q, which was not offered", errWSRedact, ext)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return fmt.Errorf("%w: upgraded body is not a connection", errWSRedact)
	}
	resp.Body = &wsRedactor{rwc: rwc, br: bufio.NewReaderSize(rwc, 4<<10), msg: stream{red: red}}
	return nil
}

// wsRedactor is an upgraded upstream connection whose reads yield the
// server's WebSocket frames with the secrets in their payloads replaced;
// writes (the client's frames) pass through. A data message is redacted
// as one stream across its fragments. Frames are re-fragmented, which RFC
// 6455 (section 5.4) allows an intermediary when no extension is in use:
// a frame longer than redactChunk goes on as several, so that memory stays
// bounded whatever the frame length, and a tail that may begin a match
// waits for the next fragment. Control frames are redacted whole and kept
// within the 125 bytes the protocol allows.
type wsRedactor struct {
	rwc io.ReadWriteCloser
	br  *bufio.Reader

	msg     stream // the data message in progress
	inMsg   bool   // a data message has begun and not ended
	opcode  byte   // the message's opcode, until its first frame is sent
	fin     bool   // the current input frame ends its message
	left    uint64 // payload bytes of the current input frame not yet read
	inFrame bool   // a data frame's payload is being read
	chunk   []byte
	payload []byte // a redacted chunk, reused for every chunk
	out     []byte // frames ready for the client
	spare   []byte // out's whole buffer, reused once out is drained
	err     error
}

func (w *wsRedactor) Write(p []byte) (int, error) { return w.rwc.Write(p) }
func (w *wsRedactor) Close() error                { return w.rwc.Close() }

func (w *wsRedactor) Read(p []byte) (int, error) {
	for len(w.out) == 0 {
		if w.err != nil {
			return 0, w.err
		}
		w.out = w.spare[:0]
		err := w.step()
		w.spare = w.out
		if err != nil {
			// Frames already redacted are still delivered; a broken
			// frame is not, nor anything after it.
			w.err = err
		}
	}
	n := copy(p, w.out)
	w.out = w.out[n:]
	return n, nil
}

// step reads one frame header, or one chunk of a data frame's payload,
// and appends what it can to w.out.
func (w *wsRedactor) step() error {
	if w.inFrame {
		return w.dataChunk()
	}
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return err // io.EOF between frames: the connection ended cleanly
	}
	fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	if rsv != 0 {
		return fmt.Errorf("%w: reserved bits set (an extension that was not negotiated)", errWSRedact)
	}
	if h[1]&0x80 != 0 {
		return fmt.Errorf("%w: masked frame from the server", errWSRedact)
	}
	n, err := w.length(h[1] & 0x7f)
	if err != nil {
		return err
	}
	switch {
	case op == wsClose || op == wsPing || op == wsPong:
		if !fin || n > wsMaxControl {
			return fmt.Errorf("%w: fragmented or oversized control frame", errWSRedact)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(w.br, payload); err != nil {
			return unexpected(err)
		}
		if payload = w.msg.red.replaceAll(payload); len(payload) > wsMaxControl {
			// Grown past the limit by a longer placeholder: a ping's
			// payload is cut, a close frame keeps its code and loses
			// its reason (cut, it could end inside a UTF-8 sequence).
			payload = payload[:wsMaxControl]
			if op == wsClose {
				payload = payload[:2]
			}
		}
		w.out = appendWSFrame(w.out, true, op, payload)
		return nil
	case op == wsText || op == wsBinary:
		if w.inMsg {
			return fmt.Errorf("%w: new message inside a fragmented one", errWSRedact)
		}
		w.inMsg, w.opcode = true, op
	case op == wsContinuation:
		if !w.inMsg {
			return fmt.Errorf("%w: continuation outside a message", errWSRedact)
		}
	default:
		return fmt.Errorf("%w: unknown opcode %#x", errWSRedact, op)
	}
	w.fin, w.left, w.inFrame = fin, n, true
	return w.dataChunk()
}

// length reads the rest of a frame's payload length.
func (w *wsRedactor) length(n7 byte) (uint64, error) {
	var ext [8]byte
	switch n7 {
	case 126:
		if _, err := io.ReadFull(w.br, ext[:2]); err != nil {
			return 0, unexpected(err)
		}
		return uint64(binary.BigEndian.Uint16(ext[:2])), nil
	case 127:
		if _, err := io.ReadFull(w.br, ext[:]); err != nil {
			return 0, unexpected(err)
		}
		n := binary.BigEndian.Uint64(ext[:])
		if n>>63 != 0 {
			return 0, fmt.Errorf("%w: payload length with its top bit set", errWSRedact)
		}
		return n, nil
	}
	return uint64(n7), nil
}

// dataChunk reads up to redactChunk bytes of the current data frame and
// passes on, as a frame, what the message's stream lets out.
func (w *wsRedactor) dataChunk() error {
	if cap(w.chunk) == 0 {
		w.chunk = make([]byte, 0, redactChunk)
	}
	n := min(w.left, uint64(redactChunk))
	b := w.chunk[:n]
	if _, err := io.ReadFull(w.br, b); err != nil {
		return unexpected(err)
	}
	w.left -= n
	end := w.left == 0
	if end {
		w.inFrame = false
	}
	last := end && w.fin
	w.payload = w.msg.push(w.payload[:0], b, last)
	payload := w.payload
	if len(payload) == 0 && !last {
		return nil // everything waits for the next fragment
	}
	op := byte(wsContinuation)
	if w.opcode != 0 {
		op, w.opcode = w.opcode, 0
	}
	w.out = appendWSFrame(w.out, last, op, payload)
	if last {
		w.inMsg = false
	}
	return nil
}

// appendWSFrame appends an unmasked frame (as a server sends) to b.
func appendWSFrame(b []byte, fin bool, op byte, payload []byte) []byte {
	h0 := op
	if fin {
		h0 |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, h0, byte(n))
	case n <= 0xffff:
		b = append(b, h0, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, h0, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// unexpected turns an end of input inside a frame into an error.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
