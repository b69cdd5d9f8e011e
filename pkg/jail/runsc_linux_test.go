//go:build linux

package jail

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A copy replaces files and links (not what a link points to), and with
// IfExists writes only where a file was.
func TestFileCopyInstall(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bundle.pem")
	os.WriteFile(src, []byte("keygate bundle\n"), 0o600)
	present := filepath.Join(dir, "present.crt")
	os.WriteFile(present, []byte("system roots\n"), 0o644)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("left alone\n"), 0o644)
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent.crt")

	f := FileCopy{Src: src, Dst: []string{present, link, absent}, IfExists: true}
	if err := f.install(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{present, link} {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != "keygate bundle\n" {
			t.Errorf("%s: %q, %v", filepath.Base(p), b, err)
		}
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: not a regular 0644 file: %v %v", filepath.Base(p), fi.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "left alone\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if _, err := os.Lstat(absent); !os.IsNotExist(err) {
		t.Errorf("IfExists created %s", absent)
	}

	f = FileCopy{Src: src, Dst: []string{absent}}
	if err := f.install(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(absent); string(b) != "keygate bundle\n" {
		t.Errorf("without IfExists the file was not created: %q", b)
	}
	if err := (FileCopy{Src: filepath.Join(dir, "none"), Dst: []string{absent}}).install(); err == nil {
		t.Error("a missing source installed")
	}
}

func TestRunscSetupArgv(t *testing.T) {
	env := []string{"API_KEY=kgph_x", "LD_PRELOAD=/tmp/evil.so"}
	if _, err := RunscSetupArgv("/bin/keygated", RunscSetup{UID: 0, GID: 1000}, env, []string{"sh"}); err == nil {
		t.Fatal("root accepted as the sandbox user")
	}
	argv, err := RunscSetupArgv("/bin/keygated", RunscSetup{UID: 1000, GID: 1000,
		Files: []FileCopy{{Src: "/a", Dst: []string{"/b"}}}}, env, []string{"sh", "-c", "true"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/keygated", RunscSetupArg, argv[2], "API_KEY=kgph_x", "LD_PRELOAD=/tmp/evil.so", "sh", "-c", "true"}
	if !slices.Equal(argv, want) {
		t.Fatalf("argv %q", argv)
	}
	var s RunscSetup
	if err := json.Unmarshal([]byte(argv[2]), &s); err != nil || s.UID != 1000 || len(s.Files) != 1 || s.Envc != 2 {
		t.Fatalf("setup %q: %+v %v", argv[2], s, err)
	}
	// The environment is the command's, not the stage's.
	if slices.ContainsFunc(RunscSetupEnv, func(kv string) bool { return !strings.HasPrefix(kv, "PATH=") }) {
		t.Fatalf("the setup stage's environment holds more than PATH: %q", RunscSetupEnv)
	}
	for _, short := range [][]string{{argv[2]}, argv[2:4], argv[2:5]} {
		if code, err := runscSetup(short); code != 125 || err == nil {
			t.Fatalf("%q: %d %v", short, code, err)
		}
	}
}
