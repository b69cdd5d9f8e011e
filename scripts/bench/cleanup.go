package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// cleanups is a stack of teardown steps, run last-in first-out once.
type cleanups struct {
	mu    sync.Mutex
	steps []cleanupStep // guarded by mu
}

type cleanupStep struct {
	what string
	fn   func() error
}

// add pushes fn; what names it in the log if it fails.
func (c *cleanups) add(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, cleanupStep{what, fn})
}

// run runs every step pushed so far, newest first, and logs failures.
func (c *cleanups) run() {
	c.mu.Lock()
	steps := c.steps
	c.steps = nil
	c.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(); err != nil {
			log.Printf("cleanup: %s: %v", steps[i].what, err)
		}
	}
}

// notifyContext returns a context cancelled by the first SIGINT or SIGTERM.
// Cancelling ends the running step's processes; the run then unwinds and
// runs its cleanups, so the world and keygated never outlive an interrupted
// run. Later signals only say that cleanup is under way.
func notifyContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		log.Printf("%v: stopping and cleaning up", s)
		cancel()
		for range sigs {
			log.Printf("still cleaning up; the world and keygated are being removed")
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(sigs)
		cancel()
	}
}
