// Command wsclient is a WebSocket test client the end-to-end tests run in
// a sandbox (github.com/gorilla/websocket). It sends each argument as a
// text message and prints the reply to each; with -read-all it then reads
// every message until the server closes, printing one line for each.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	url := flag.String("url", "", "wss:// URL")
	tokenEnv := flag.String("bearer-env", "", "send Authorization: Bearer $VAR in the handshake")
	readAll := flag.Bool("read-all", false,
		"after the replies, print every message until the server closes: text as is, binary as its length and the\n"+
			"number of copies of the bearer value in it, pings and the close frame too")
	flag.Parse()

	h := http.Header{"Origin": {"https://keygate.test/"}}
	bearer := ""
	if *tokenEnv != "" {
		bearer = "Bearer " + os.Getenv(*tokenEnv)
		h.Set("Authorization", bearer)
	}
	// System roots: SSL_CERT_FILE, as keygate sets it.
	d := websocket.Dialer{TLSClientConfig: &tls.Config{}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(*url, h)
	if err != nil {
		fail(err)
	}
	defer ws.Close()
	for _, msg := range flag.Args() {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			fail(err)
		}
		_, reply, err := ws.ReadMessage()
		if err != nil {
			fail(err)
		}
		fmt.Println(string(reply))
	}
	if !*readAll {
		return
	}
	ws.SetPingHandler(func(data string) error {
		fmt.Printf("ping: %s\n", data)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	for {
		typ, msg, err := ws.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			fmt.Printf("close: %d %s\n", ce.Code, ce.Text)
			return
		case err != nil:
			fail(err)
		case typ == websocket.BinaryMessage:
			fmt.Printf("binary: %d bytes, %d copies of the bearer value\n", len(msg), strings.Count(string(msg), bearer))
		default:
			fmt.Printf("text: %s\n", msg)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wsclient:", err)
	os.Exit(1)
}
