//go:build linux

package hostagent

import (
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAdmits(t *testing.T) {
	group := uint32(4242)
	self := int32(os.Getpid())
	mine, err := procGroups(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		group *uint32
		cred  unix.Ucred
		want  bool
	}{
		{"root without group", nil, unix.Ucred{Pid: self, Uid: 0, Gid: 0}, true},
		{"user without group", nil, unix.Ucred{Pid: self, Uid: 1000, Gid: 4242}, false},
		{"primary group member", &group, unix.Ucred{Pid: self, Uid: 1000, Gid: 4242}, true},
		{"not a member", &group, unix.Ucred{Pid: self, Uid: 1000, Gid: 1000}, slices.Contains(mine, group)},
		{"root with group", &group, unix.Ucred{Pid: self, Uid: 0, Gid: 0}, true},
		{"peer gone", &group, unix.Ucred{Pid: -1, Uid: 1000, Gid: 1000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{cfg: Config{APIGroup: tt.group}}
			if got := a.admits(&tt.cred); got != tt.want {
				t.Errorf("admits(%+v) = %v, want %v", tt.cred, got, tt.want)
			}
		})
	}
}

func TestProcGroupsSupplementary(t *testing.T) {
	want, err := unix.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got, err := procGroups(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range want {
		if !slices.Contains(got, uint32(g)) {
			t.Errorf("procGroups = %v, missing %d of getgroups %v", got, g, want)
		}
	}
}
