package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// maxSecret bounds a secret read from stdin or a file.
const maxSecret = 64 << 10

// readSecret reads a secret from file if given, else from stdin: without
// echo when stdin is a terminal. One trailing newline is dropped. Secrets
// are never taken from argv, where every user of the host could read them.
func readSecret(e *env, file string) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case file != "":
		b, err = readLimited(file)
	case term.IsTerminal(int(e.stdin.Fd())):
		fmt.Fprint(e.stderr, "secret (input hidden): ")
		b, err = term.ReadPassword(int(e.stdin.Fd()))
		fmt.Fprintln(e.stderr)
	default:
		b, err = io.ReadAll(io.LimitReader(e.stdin, maxSecret+1))
	}
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if len(b) > maxSecret {
		return nil, fmt.Errorf("read secret: longer than %d bytes", maxSecret)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, errors.New("read secret: empty secret (give it on stdin or with --secret-file)")
	}
	return b, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSecret+1))
}
