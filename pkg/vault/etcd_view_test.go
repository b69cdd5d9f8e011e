package vault

import (
	"strings"
	"testing"
)

func TestEtcdKeysParse(t *testing.T) {
	k := etcdKeys{prefix: "/kg/"}
	tests := []struct {
		key   string
		kind  keyKind
		vault string
		name  string
	}{
		{k.vault("prod"), etcdKeyVault, "prod", ""},
		{k.cred("prod", "openai"), etcdKeyCred, "prod", "openai"},
		{k.secret("prod", "openai"), etcdKeySecret, "prod", "openai"},
		{k.purgePending(), etcdKeyPurgePending, "", ""},
		{k.gen("prod"), etcdKeyOther, "", ""},
		{k.keyCheck(), etcdKeyOther, "", ""},
		{"/other/vaults/prod", etcdKeyOther, "", ""},
	}
	for _, tt := range tests {
		kind, vault, name := k.parse(tt.key)
		if kind != tt.kind || vault != tt.vault || name != tt.name {
			t.Errorf("parse(%q) = %v %q %q, want %v %q %q", tt.key, kind, vault, name, tt.kind, tt.vault, tt.name)
		}
	}
	if !strings.HasPrefix(k.creds("prod"), "/kg/creds/prod/") {
		t.Errorf("creds prefix %q", k.creds("prod"))
	}
}

func TestEtcdViewDiff(t *testing.T) {
	at := now()
	view := func(rev int64, vaults map[string]bool, creds map[string]uint64) *etcdView {
		v := newEtcdView(rev)
		for name, archived := range vaults {
			rec := vaultRecord{Created: at}
			if archived {
				rec.ArchivedAt = &at
			}
			v.vaults[name] = rec
		}
		for key, version := range creds {
			vault, name, _ := strings.Cut(key, "/")
			setIn(v.creds, vault, name, Credential{Vault: vault, Name: name, Version: version})
		}
		return v
	}
	old := view(5,
		map[string]bool{"gone": false, "keep": false, "arch": false},
		map[string]uint64{"keep/rot": 1, "keep/same": 1, "keep/rm": 1, "arch/c": 1})
	fresh := view(9,
		map[string]bool{"keep": false, "arch": true, "new": false},
		map[string]uint64{"keep/rot": 3, "keep/same": 1, "keep/add": 1, "arch/c": 1, "new/c": 1})

	var got []string
	for _, c := range fresh.diff(old) {
		if c.Revision != 9 {
			t.Errorf("%+v: revision %d, want the new view's", c, c.Revision)
		}
		got = append(got, string(c.Kind)+" "+c.Vault+"/"+c.Credential)
	}
	want := []string{"archive arch/", "archive gone/", "add keep/add", "remove keep/rm",
		"rotate keep/rot", "create new/", "add new/c"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("diff =\n%v, want\n%v", got, want)
	}
}
