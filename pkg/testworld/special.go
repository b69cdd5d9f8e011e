package testworld

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
)

// Special paths every world HTTP server answers after recording the
// request, for tests of streaming and reflection through a proxy:
//
//	/_kg/echo          the request's headers as JSON, and its Authorization
//	                   header again in the X-Echo-Authorization response header
//	/_kg/sse?n=N&ms=M  N server-sent events, one every M milliseconds, each
//	                   flushed on its own
//	/_kg/download?bytes=N  N bytes of 'x', streamed
//	/_kg/upload        {"bytes": n}: how many body bytes arrived
//	/_kg/stall?ms=M    reads none of the body, answers after M milliseconds
//	                   (default 10,000): an upstream that stops reading
//	/_kg/trailer       a body followed by the trailer X-Checksum: done
//	/_kg/replay        the Authorization header of the request the server
//	                   received before this one
//	/_kg/early-hints   a 103 Early Hints whose Link header carries the
//	                   Authorization value, then a 200
//	/_kg/encoded?enc=E the Authorization header as the body, labelled
//	                   Content-Encoding: E (an upstream compressing unasked)
//	/_kg/ws            a WebSocket echo (any path with an Upgrade: websocket
//	                   request is served as one)
//	/_kg/ws-reflect    a WebSocket server that sends the handshake's
//	                   Authorization value back in every way a frame can
//	                   carry it (see serveWebSocketReflect)
//	/_kg/git/REPO.git  a git smart-HTTP server that asks for Basic
//	                   credentials (401) and then advertises one ref, so
//	                   `git ls-remote` authenticates the way it does with a
//	                   real forge
const specialPrefix = "/_kg/"

// serveSpecial answers r if its path is special; bodyBytes is how much
// body arrived. It reports whether it answered.
func serveSpecial(rw http.ResponseWriter, r *http.Request, bodyBytes int64) bool {
	if !strings.HasPrefix(r.URL.Path, specialPrefix) {
		return false
	}
	q := r.URL.Query()
	if rest, ok := strings.CutPrefix(r.URL.Path, specialPrefix+"git/"); ok {
		serveGit(rw, r, rest)
		return true
	}
	switch strings.TrimPrefix(r.URL.Path, specialPrefix) {
	case "echo":
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
		json.NewEncoder(rw).Encode(map[string]any{"headers": r.Header, "query": r.URL.RawQuery})
	case "sse":
		serveSSE(rw, atoi(q.Get("n"), 3), time.Duration(atoi(q.Get("ms"), 200))*time.Millisecond)
	case "download":
		serveDownload(rw, int64(atoi(q.Get("bytes"), 1<<20)))
	case "upload":
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(map[string]int64{"bytes": bodyBytes})
	case "early-hints":
		// A 103 whose Link header carries the Authorization value, then
		// the answer.
		rw.Header().Set("Link", "</style.css?auth="+r.Header.Get("Authorization")+">; rel=preload")
		rw.WriteHeader(http.StatusEarlyHints)
		rw.Header().Del("Link")
		io.WriteString(rw, "after the hints\n")
	case "encoded":
		// Claims an encoding it did not apply: the body is the
		// Authorization header as sent.
		rw.Header().Set("Content-Encoding", q.Get("enc"))
		io.WriteString(rw, r.Header.Get("Authorization"))
	case "trailer":
		rw.Header().Set("Trailer", "X-Checksum")
		io.WriteString(rw, "body before the trailer\n")
		rw.Header().Set("X-Checksum", "done")
	default:
		http.NotFound(rw, r)
	}
	return true
}

func serveSSE(rw http.ResponseWriter, n int, every time.Duration) {
	rw.Header().Set("Content-Type", "text/event-stream")
	rw.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(rw)
	for i := range n {
		fmt.Fprintf(rw, "id: %d\ndata: event %d at %d\n\n", i, i, time.Now().UnixMilli())
		if err := rc.Flush(); err != nil {
			return
		}
		if i < n-1 {
			time.Sleep(every)
		}
	}
}

func serveDownload(rw http.ResponseWriter, n int64) {
	rw.Header().Set("Content-Type", "application/octet-stream")
	rw.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	chunk := []byte(strings.Repeat("x", 64<<10))
	for n > 0 {
		w := min(n, int64(len(chunk)))
		if _, err := rw.Write(chunk[:w]); err != nil {
			return
		}
		n -= w
	}
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveWebSocket echoes every message back, prefixed with "echo: ".
func serveWebSocket(rw http.ResponseWriter, r *http.Request) {
	websocket.Server{
		Handshake: func(*websocket.Config, *http.Request) error { return nil }, // any origin
		Handler: func(ws *websocket.Conn) {
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				if err := websocket.Message.Send(ws, "echo: "+msg); err != nil {
					return
				}
			}
		},
	}.ServeHTTP(rw, r)
}

func atoi(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n
	}
	return def
}

// gitHead is the commit the fake repository's main branch points at.
const gitHead = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// serveGit answers the ref advertisement of git's smart-HTTP protocol.
func serveGit(rw http.ResponseWriter, r *http.Request, path string) {
	if !strings.HasSuffix(path, "/info/refs") || r.URL.Query().Get("service") != "git-upload-pack" {
		http.NotFound(rw, r)
		return
	}
	if r.Header.Get("Authorization") == "" {
		rw.Header().Set("WWW-Authenticate", `Basic realm="testworld git"`)
		http.Error(rw, "authentication required", http.StatusUnauthorized)
		return
	}
	rw.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	rw.Header().Set("Cache-Control", "no-cache")
	io.WriteString(rw, pktLine("# service=git-upload-pack\n")+"0000")
	io.WriteString(rw, pktLine(gitHead+" HEAD\x00symref=HEAD:refs/heads/main agent=testworld\n"))
	io.WriteString(rw, pktLine(gitHead+" refs/heads/main\n")+"0000")
}

// pktLine frames s as a git pkt-line: four hex digits of length, then s.
func pktLine(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
