// Package oci writes the OCI runtime bundles keygate hands to gVisor's
// runsc: a config.json describing the sandbox's process, its view of the
// file system and the network namespace it joins. Only the parts of the
// runtime specification keygate uses are modelled.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// specVersion is the OCI runtime specification version written.
const specVersion = "1.0.2"

// Bind shows Src read-only at Dst inside the sandbox.
type Bind struct {
	Src, Dst string
}

// Config describes one sandbox.
type Config struct {
	Rootfs   string   // the sandbox's root directory; "" = "/" (the host's, read-only)
	Args     []string // the command
	Env      []string // KEY=VALUE
	Cwd      string   // working directory inside the sandbox; "" = Home
	Home     string   // the sandbox user's home: a private, writable tmpfs
	UID, GID uint32   // the sandbox user; never 0
	Hostname string
	NetNS    string   // path of the network namespace to join (a pinned netns)
	Hide     []string // paths covered: directories by an empty tmpfs, files by /dev/null
	Binds    []Bind   // read-only binds over the root, e.g. the CA bundle
	Tmpfs    []string // private writable directories besides Home, e.g. /tmp
	// WritableRoot makes the root writable, for a runtime that keeps the
	// writes in a private overlay (runsc --overlay2=root:memory); the
	// files below never change.
	WritableRoot bool
	// StartAsRoot starts Args as root with only the capabilities needed
	// to give root up (setupCaps), for a first process that installs
	// files into the private overlay and then becomes UID and GID itself
	// (the agent's runsc setup stage). It needs WritableRoot.
	StartAsRoot bool
}

// setupCaps are what a StartAsRoot process holds: enough to empty its
// bounding set and change its IDs, nothing that reaches past the sandbox's
// own files.
var setupCaps = []string{"CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID"}

func (c *Config) validate() error {
	switch {
	case len(c.Args) == 0 || c.Args[0] == "":
		return errors.New("oci: no command")
	case c.UID == 0 || c.GID == 0:
		return errors.New("oci: the sandbox user must not be root")
	case c.NetNS == "" || !filepath.IsAbs(c.NetNS):
		return fmt.Errorf("oci: network namespace path %q: need an absolute path", c.NetNS)
	case !filepath.IsAbs(c.Home):
		return fmt.Errorf("oci: home %q: need an absolute path", c.Home)
	case c.StartAsRoot && !c.WritableRoot:
		return errors.New("oci: a process started as root must write into a private overlay (WritableRoot)")
	}
	return nil
}

// The JSON shapes of the runtime specification.
type (
	spec struct {
		OCIVersion string  `json:"ociVersion"`
		Process    process `json:"process"`
		Root       root    `json:"root"`
		Hostname   string  `json:"hostname,omitempty"`
		Mounts     []mount `json:"mounts"`
		Linux      linux   `json:"linux"`
	}
	process struct {
		Terminal        bool         `json:"terminal"`
		User            user         `json:"user"`
		Args            []string     `json:"args"`
		Env             []string     `json:"env"`
		Cwd             string       `json:"cwd"`
		Capabilities    capabilities `json:"capabilities"`
		NoNewPrivileges bool         `json:"noNewPrivileges"`
		Rlimits         []rlimit     `json:"rlimits,omitempty"`
	}
	user struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	}
	// capabilities are all empty: the command has none, in any set.
	capabilities struct {
		Bounding    []string `json:"bounding"`
		Effective   []string `json:"effective"`
		Inheritable []string `json:"inheritable"`
		Permitted   []string `json:"permitted"`
		Ambient     []string `json:"ambient"`
	}
	rlimit struct {
		Type string `json:"type"`
		Hard uint64 `json:"hard"`
		Soft uint64 `json:"soft"`
	}
	root struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	}
	mount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options,omitempty"`
	}
	linux struct {
		Namespaces []namespace `json:"namespaces"`
	}
	namespace struct {
		Type string `json:"type"`
		Path string `json:"path,omitempty"`
	}
)

// Write creates dir if needed and writes cfg as dir/config.json.
func Write(dir string, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(build(cfg), "", "  ")
	if err != nil {
		return fmt.Errorf("oci: encode spec: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("oci: bundle dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("oci: write spec: %w", err)
	}
	return nil
}

// build turns cfg into a runtime spec: the root read-only, fresh proc,
// private tmpfs home and scratch directories, keygate's paths hidden, the
// given binds, and new pid, mount, ipc and uts namespaces with the network
// namespace joined by path.
func build(cfg Config) spec {
	rootfs := cfg.Rootfs
	if rootfs == "" {
		rootfs = "/"
	}
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = cfg.Home
	}
	s := spec{
		OCIVersion: specVersion,
		Process: process{
			User: user{UID: cfg.UID, GID: cfg.GID}, Args: cfg.Args, Env: cfg.Env, Cwd: cwd,
			Capabilities: capabilities{
				Bounding: []string{}, Effective: []string{}, Inheritable: []string{},
				Permitted: []string{}, Ambient: []string{},
			},
			NoNewPrivileges: true,
			Rlimits:         []rlimit{{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 65536}},
		},
		Root:     root{Path: rootfs, Readonly: !cfg.WritableRoot},
		Hostname: cfg.Hostname,
		Mounts: []mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: linux{Namespaces: []namespace{
			{Type: "pid"}, {Type: "mount"}, {Type: "ipc"}, {Type: "uts"},
			{Type: "network", Path: cfg.NetNS},
		}},
	}
	if cfg.StartAsRoot {
		s.Process.User = user{}
		c := &s.Process.Capabilities
		c.Bounding, c.Effective, c.Permitted = setupCaps, setupCaps, setupCaps
	}
	tmpfs := cfg.Tmpfs
	if !cfg.WritableRoot {
		tmpfs = append(tmpfs, cfg.Home)
	}
	for _, dir := range tmpfs {
		s.Mounts = append(s.Mounts, mount{Destination: dir, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777"}})
	}
	for _, p := range cfg.Hide {
		if Under(p, cfg.Tmpfs) {
			continue // a fresh tmpfs above it hides it already
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			s.Mounts = append(s.Mounts, mount{Destination: p, Type: "bind", Source: "/dev/null",
				Options: []string{"bind", "ro"}})
			continue
		}
		s.Mounts = append(s.Mounts, mount{Destination: p, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"ro", "nosuid", "nodev", "noexec", "size=4k"}})
	}
	for _, b := range cfg.Binds {
		s.Mounts = append(s.Mounts, mount{Destination: b.Dst, Type: "bind", Source: b.Src,
			Options: []string{"bind", "ro"}})
	}
	return s
}

// Under reports whether path is one of dirs or below one: whether Config
// dirs (Hide, Tmpfs) cover it.
func Under(path string, dirs []string) bool {
	for _, d := range dirs {
		if rel, err := filepath.Rel(d, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}
