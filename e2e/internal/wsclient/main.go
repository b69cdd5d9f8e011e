// Command wsclient is a WebSocket test client the end-to-end tests run in
// sandboxes: it opens wss://HOST/PATH with an Authorization header taken
// from an environment variable, sends one message per argument and prints
// each reply on its own line.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"

	"golang.org/x/net/websocket"
)

func main() {
	url := flag.String("url", "", "wss:// URL")
	tokenEnv := flag.String("bearer-env", "", "send Authorization: Bearer $VAR in the handshake")
	flag.Parse()

	cfg, err := websocket.NewConfig(*url, "https://keygate.test/")
	if err != nil {
		fail(err)
	}
	cfg.TlsConfig = &tls.Config{} // system roots: SSL_CERT_FILE, as keygate sets it
	cfg.Header = http.Header{}
	if *tokenEnv != "" {
		cfg.Header.Set("Authorization", "Bearer "+os.Getenv(*tokenEnv))
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		fail(err)
	}
	defer ws.Close()
	for _, msg := range flag.Args() {
		if err := websocket.Message.Send(ws, msg); err != nil {
			fail(err)
		}
		var reply string
		if err := websocket.Message.Receive(ws, &reply); err != nil {
			fail(err)
		}
		fmt.Println(reply)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wsclient:", err)
	os.Exit(1)
}
