package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/mapkeys"
)

// Key layout under the prefix P. Vault and credential names cannot hold
// '/' (ValidateName), so every key splits one way only.
//
//	P meta/key-check       sealed key check (crypto.go), written by the first host
//	P meta/purge-pending   present while old revisions may still hold purged records
//	P meta/purge-mark      rewritten by a purge, to give each member a compaction of its own
//	P vaults/V             JSON vaultRecord
//	P gen/V                vault V's generation: rewritten by every change to V's credentials
//	P creds/V/N            JSON Credential
//	P secrets/V/N          sealed record (crypto.go), written with creds/V/N
type etcdKeys struct{ prefix string }

func (k etcdKeys) keyCheck() string     { return k.prefix + "meta/key-check" }
func (k etcdKeys) purgePending() string { return k.prefix + "meta/purge-pending" }
func (k etcdKeys) purgeMark() string    { return k.prefix + "meta/purge-mark" }
func (k etcdKeys) vault(v string) string {
	return k.prefix + "vaults/" + v
}
func (k etcdKeys) gen(v string) string     { return k.prefix + "gen/" + v }
func (k etcdKeys) creds(v string) string   { return k.prefix + "creds/" + v + "/" }
func (k etcdKeys) secrets(v string) string { return k.prefix + "secrets/" + v + "/" }
func (k etcdKeys) cred(v, n string) string { return k.creds(v) + n }
func (k etcdKeys) secret(v, n string) string {
	return k.secrets(v) + n
}

// keyKind classifies a key under the prefix.
type keyKind int

const (
	etcdKeyOther keyKind = iota
	etcdKeyPurgePending
	etcdKeyVault
	etcdKeyCred
	etcdKeySecret
)

// parse splits a key into its kind, vault and credential name.
func (k etcdKeys) parse(key string) (kind keyKind, vault, name string) {
	rest, ok := strings.CutPrefix(key, k.prefix)
	if !ok {
		return etcdKeyOther, "", ""
	}
	if rest == "meta/purge-pending" {
		return etcdKeyPurgePending, "", ""
	}
	section, rest, _ := strings.Cut(rest, "/")
	switch section {
	case "vaults":
		return etcdKeyVault, rest, ""
	case "creds":
		vault, name, _ = strings.Cut(rest, "/")
		return etcdKeyCred, vault, name
	case "secrets":
		vault, name, _ = strings.Cut(rest, "/")
		return etcdKeySecret, vault, name
	}
	return etcdKeyOther, "", ""
}

// etcdView is a host's copy of the store, as of revision rev.
type etcdView struct {
	rev          int64
	vaults       map[string]vaultRecord
	creds        map[string]map[string]Credential // vault → name → metadata
	secrets      map[string]map[string][]byte     // vault → name → sealed record
	purgePending bool
}

func newEtcdView(rev int64) *etcdView {
	return &etcdView{
		rev:     rev,
		vaults:  make(map[string]vaultRecord),
		creds:   make(map[string]map[string]Credential),
		secrets: make(map[string]map[string][]byte),
	}
}

// load reads everything under the prefix at one revision into a new view.
func (s *Etcd) load(ctx context.Context) (*etcdView, error) {
	resp, err := s.client.Get(ctx, s.k.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError{fmt.Errorf("load %s: %w", s.k.prefix, err)}
	}
	v := newEtcdView(resp.Header.Revision)
	for _, kv := range resp.Kvs {
		v.put(s.k, kv, s.log)
	}
	return v, nil
}

// apply updates the view with one watch event and returns the change it
// makes, or nil for an event that is not a change of its own (a sealed
// record, a generation, metadata rewritten without a new version).
func (v *etcdView) apply(k etcdKeys, ev *clientv3.Event, log *slog.Logger) *Change {
	kind, vault, name := k.parse(string(ev.Kv.Key))
	rev := ev.Kv.ModRevision
	if ev.Type == mvccpb.DELETE {
		return v.remove(kind, vault, name, rev)
	}

	var change *Change
	switch kind {
	case etcdKeyVault:
		old, existed := v.vaults[vault]
		if !v.put(k, ev.Kv, log) {
			return nil
		}
		now := v.vaults[vault]
		switch {
		case !existed:
			change = &Change{Kind: ChangeCreate, Vault: vault}
		case old.ArchivedAt == nil && now.ArchivedAt != nil:
			change = &Change{Kind: ChangeArchive, Vault: vault}
		}
	case etcdKeyCred:
		old, existed := v.creds[vault][name]
		if !v.put(k, ev.Kv, log) {
			return nil
		}
		switch {
		case !existed:
			change = &Change{Kind: ChangeAdd, Vault: vault, Credential: name}
		case old.Version != v.creds[vault][name].Version:
			change = &Change{Kind: ChangeRotate, Vault: vault, Credential: name}
		}
	default:
		v.put(k, ev.Kv, log)
	}
	if change != nil {
		change.Revision = rev
	}
	return change
}

// put stores one key's value in the view. It reports false, and logs, for
// a record that does not decode: the view keeps what it had, since a bad
// write by one host must not take the others down.
func (v *etcdView) put(k etcdKeys, kv *mvccpb.KeyValue, log *slog.Logger) bool {
	kind, vault, name := k.parse(string(kv.Key))
	switch kind {
	case etcdKeyPurgePending:
		v.purgePending = true
	case etcdKeyVault:
		var rec vaultRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			log.Error("undecodable vault record ignored", logKey, string(kv.Key), logError, err)
			return false
		}
		v.vaults[vault] = rec
	case etcdKeyCred:
		var c Credential
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			log.Error("undecodable credential record ignored", logKey, string(kv.Key), logError, err)
			return false
		}
		setIn(v.creds, vault, name, c)
	case etcdKeySecret:
		setIn(v.secrets, vault, name, slices.Clone(kv.Value))
	}
	return true
}

// remove applies a deletion and returns the change it makes, if any.
func (v *etcdView) remove(kind keyKind, vault, name string, rev int64) *Change {
	switch kind {
	case etcdKeyPurgePending:
		v.purgePending = false
	case etcdKeyVault:
		// Not something keygate does: a vault's record outlives its
		// archiving. Whoever deleted it took the vault with it.
		if _, ok := v.vaults[vault]; ok {
			delete(v.vaults, vault)
			return &Change{Kind: ChangeArchive, Vault: vault, Revision: rev}
		}
	case etcdKeyCred:
		if _, ok := v.creds[vault][name]; ok {
			deleteIn(v.creds, vault, name)
			return &Change{Kind: ChangeRemove, Vault: vault, Credential: name, Revision: rev}
		}
	case etcdKeySecret:
		deleteIn(v.secrets, vault, name)
	}
	return nil
}

// diff returns the changes that lead from view old to view v, at v's
// revision: what a host that reloaded has missed. Vaults come in name
// order, each vault's credential changes after the vault's own.
func (v *etcdView) diff(old *etcdView) []Change {
	var out []Change
	add := func(kind ChangeKind, vault, name string) {
		out = append(out, Change{Kind: kind, Vault: vault, Credential: name, Revision: v.rev})
	}
	for _, vault := range mapkeys.SortedUnion(v.vaults, old.vaults) {
		was, existed := old.vaults[vault]
		now, exists := v.vaults[vault]
		switch {
		case !exists:
			add(ChangeArchive, vault, "")
			continue
		case !existed:
			add(ChangeCreate, vault, "")
		}
		for _, name := range mapkeys.SortedUnion(v.creds[vault], old.creds[vault]) {
			c, had := old.creds[vault][name]
			n, has := v.creds[vault][name]
			switch {
			case !has:
				add(ChangeRemove, vault, name)
			case !had:
				add(ChangeAdd, vault, name)
			case c.Version != n.Version:
				add(ChangeRotate, vault, name)
			}
		}
		if now.ArchivedAt != nil && (!existed || was.ArchivedAt == nil) {
			add(ChangeArchive, vault, "")
		}
	}
	return out
}

func setIn[V any](m map[string]map[string]V, outer, inner string, val V) {
	if m[outer] == nil {
		m[outer] = make(map[string]V)
	}
	m[outer][inner] = val
}

func deleteIn[V any](m map[string]map[string]V, outer, inner string) {
	delete(m[outer], inner)
	if len(m[outer]) == 0 {
		delete(m, outer)
	}
}
