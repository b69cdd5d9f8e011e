package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Client talks to keygated over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &Client{
		socket: socket,
		hc:     &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 2 * time.Minute},
	}
}

// Do sends a JSON request and decodes a JSON response into out (if not
// nil). A non-2xx answer becomes an error carrying the agent's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://keygate"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// ErrUnreachable is wrapped by the errors of calls that could not reach
// the agent at all (no socket, connection refused or reset).
var ErrUnreachable = errors.New("cannot reach keygated")

func (c *Client) dialError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, err)
}

func decodeResponse(resp *http.Response, out any) error {
	if resp.StatusCode/100 != 2 {
		var e Error
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e); err != nil || e.Error == "" {
			return fmt.Errorf("agent answered %s", resp.Status)
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode agent response: %w", err)
	}
	return nil
}

// Run starts a sandbox running req's command with stdio as its standard
// input, output and error, and returns a stream of its events. Closing the
// stream (or this process dying) ends the sandbox.
func (c *Client) Run(req RunRequest, stdio [3]*os.File) (*RunStream, error) {
	return c.upgrade("/v1/run", req, stdio)
}

// Exec runs req's command in the persistent sandbox id, with the same
// stream as Run. Closing the stream ends the command, not the sandbox.
func (c *Client) Exec(id string, req ExecRequest, stdio [3]*os.File) (*RunStream, error) {
	return c.upgrade("/v1/sandboxes/"+url.PathEscape(id)+"/exec", req, stdio)
}

// upgrade sends req to path, switches to the run protocol and passes stdio.
func (c *Client) upgrade(path string, req any, stdio [3]*os.File) (*RunStream, error) {
	conn, err := net.Dial("unix", c.socket)
	if err != nil {
		return nil, c.dialError(err)
	}
	uc := conn.(*net.UnixConn)
	if err := writeRunRequest(uc, path, req); err != nil {
		uc.Close()
		return nil, err
	}
	br := bufio.NewReader(uc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("read agent response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer uc.Close()
		return nil, decodeResponse(resp, nil)
	}

	rights := unix.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd()))
	if _, _, err := uc.WriteMsgUnix([]byte{0}, rights, nil); err != nil {
		uc.Close()
		return nil, fmt.Errorf("pass stdio to agent: %w", err)
	}
	return &RunStream{conn: uc, dec: json.NewDecoder(br)}, nil
}

func writeRunRequest(w io.Writer, path string, req any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequest(http.MethodPost, "http://keygate"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Connection", "Upgrade")
	hr.Header.Set("Upgrade", RunUpgrade)
	return hr.Write(w)
}

// RunStream reads a run's events.
type RunStream struct {
	conn *net.UnixConn
	dec  *json.Decoder
}

// Next returns the next event.
func (s *RunStream) Next() (RunEvent, error) {
	var ev RunEvent
	if err := s.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.EOF) {
			return ev, errors.New("agent closed the run without an exit status")
		}
		return ev, fmt.Errorf("read run event: %w", err)
	}
	return ev, nil
}

// Close ends the run: the agent kills the sandbox if it is still running.
func (s *RunStream) Close() error { return s.conn.Close() }
