package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/miekg/dns"
)

// Serve answers queries arriving on udp and tcp, sockets the caller has
// already bound, until Shutdown. Either may be nil, not both. It may be
// called more than once, concurrently, to serve several address families
// or addresses with one cache and pin table. Serve returns nil after
// Shutdown, ErrClosed if called after Shutdown, and otherwise the first
// error of either of its servers, having stopped the other.
func (r *Resolver) Serve(udp net.PacketConn, tcp net.Listener) error {
	var servers []*server
	if udp != nil {
		servers = append(servers, newServer(&dns.Server{PacketConn: udp, Handler: r}))
	}
	if tcp != nil {
		servers = append(servers, newServer(&dns.Server{Listener: tcp, Handler: r}))
	}
	if len(servers) == 0 {
		return errors.New("serve dns: no socket")
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.servers = append(r.servers, servers...)
	r.mu.Unlock()

	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.run() }()
	}

	// Whichever server stops first, by Shutdown or on a socket error, the
	// rest must stop too: Serve must not return while a socket is served.
	first := <-errc
	for _, s := range servers {
		_ = s.stop(context.Background()) // only fails once ctx is done
	}
	for range len(servers) - 1 {
		<-errc
	}

	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed || first == nil {
		return nil
	}
	return fmt.Errorf("serve dns: %w", first)
}

// Shutdown stops Serve and waits, until ctx is done, for the servers to
// stop. Upstream exchanges in flight are abandoned and their queries answered
// SERVFAIL. The Resolver cannot be used again.
func (r *Resolver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	servers := r.servers
	r.mu.Unlock()

	r.cancel()
	var errs []error
	for _, s := range servers {
		if err := s.stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shut down dns: %w", err)
	}
	return nil
}

// server tracks one dns.Server so that it can be stopped at any point of its
// life: dns.Server refuses to shut down before it has started.
type server struct {
	srv     *dns.Server
	started chan struct{} // closed once srv serves
	done    chan struct{} // closed once srv has returned from serving

	stopOnce sync.Once
	stopErr  error // set by stopOnce
}

func newServer(srv *dns.Server) *server {
	s := &server{srv: srv, started: make(chan struct{}), done: make(chan struct{})}
	srv.NotifyStartedFunc = func() { close(s.started) }
	return s
}

// run serves until the server is stopped or its socket fails.
func (s *server) run() error {
	defer close(s.done)
	return s.srv.ActivateAndServe()
}

// stop shuts the server down once, waiting for it to start first if need
// be. Later calls wait for the first and return its result.
func (s *server) stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		select {
		case <-s.started:
		case <-s.done:
			return // it never started, or already stopped on its own
		case <-ctx.Done():
			s.stopErr = ctx.Err()
			return
		}
		if err := s.srv.ShutdownContext(ctx); err != nil {
			select {
			case <-s.done:
				// It stopped on its own first; dns.Server calls that
				// "not started". Nothing is left to stop.
			default:
				s.stopErr = err
			}
		}
	})
	return s.stopErr
}
