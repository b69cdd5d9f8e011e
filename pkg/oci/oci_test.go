package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, nil, 0o600)
	cfg := Config{
		Args: []string{"curl", "https://api.example.test/"}, Env: []string{"API_KEY=kgph_x"},
		Home: "/home", UID: 65534, GID: 65534, Hostname: "kg", NetNS: "/run/keygate/netns/abc",
		Hide: []string{dir, file}, Binds: []Bind{{Src: "/run/keygate/share/ca.pem", Dst: "/etc/ssl/certs/ca-certificates.crt"}},
		Tmpfs: []string{"/var/tmp"},
	}
	bundle := filepath.Join(dir, "bundle")
	s := writeSpec(t, bundle, cfg)
	if !s.Root.Readonly || s.Root.Path != "/" || s.Process.User.UID != 65534 || !s.Process.NoNewPrivileges ||
		len(s.Process.Capabilities.Bounding) != 0 || s.Process.Cwd != "/home" {
		t.Errorf("process or root: %+v %+v", s.Process, s.Root)
	}
	if !slices.Contains(s.Linux.Namespaces, namespace{Type: "network", Path: cfg.NetNS}) {
		t.Errorf("namespaces %+v lack the network path", s.Linux.Namespaces)
	}
	kinds := map[string]string{}
	for _, m := range s.Mounts {
		kinds[m.Destination] = m.Type + ":" + m.Source
	}
	want := map[string]string{
		dir: "tmpfs:tmpfs", file: "bind:/dev/null", "/var/tmp": "tmpfs:tmpfs", "/home": "tmpfs:tmpfs",
		"/etc/ssl/certs/ca-certificates.crt": "bind:/run/keygate/share/ca.pem", "/proc": "proc:proc",
	}
	for dst, k := range want {
		if kinds[dst] != k {
			t.Errorf("mount %s = %q, want %q", dst, kinds[dst], k)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	base := Config{Args: []string{"true"}, Home: "/home", UID: 1, GID: 1, NetNS: "/run/n"}
	for name, mod := range map[string]func(*Config){
		"root user":                      func(c *Config) { c.UID = 0 },
		"no command":                     func(c *Config) { c.Args = nil },
		"relative netns":                 func(c *Config) { c.NetNS = "n" },
		"root start on a read-only root": func(c *Config) { c.StartAsRoot = true },
	} {
		c := base
		mod(&c)
		if err := Write(t.TempDir(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A process started as root holds only what it needs to give root up.
func TestWriteStartAsRoot(t *testing.T) {
	cfg := Config{Args: []string{"/bin/keygated", "setup"}, Home: "/home", UID: 1000, GID: 1000,
		NetNS: "/run/n", WritableRoot: true, StartAsRoot: true}
	bundle := t.TempDir()
	s := writeSpec(t, bundle, cfg)
	c := s.Process.Capabilities
	want := []string{"CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID"}
	if s.Process.User.UID != 0 || !s.Process.NoNewPrivileges || !slices.Equal(c.Bounding, want) ||
		!slices.Equal(c.Effective, want) || !slices.Equal(c.Permitted, want) || len(c.Inheritable) != 0 ||
		len(c.Ambient) != 0 || s.Root.Readonly {
		t.Errorf("process %+v root %+v", s.Process, s.Root)
	}
}

// writeSpec writes cfg as a bundle in dir and reads the spec back.
func writeSpec(t *testing.T, dir string, cfg Config) spec {
	t.Helper()
	if err := Write(dir, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}
