//go:build linux

package hostagent

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/vault"
)

// openStores opens the vault store and the audit log: the embedded engine
// and a local log file by default, or, with an etcd:// store URL, the
// fleet engine and a per-host audit chain on the same etcd cluster.
func (a *Agent) openStores(masterKey []byte) error {
	auditKey, err := audit.DeriveKey(masterKey)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(a.cfg.Store, "etcd://") {
		if a.store, err = vault.OpenBolt(filepath.Join(a.cfg.StateDir, "keygate.db"), masterKey); err != nil {
			return err
		}
		a.audit, err = audit.OpenFile(filepath.Join(a.cfg.StateDir, "audit.log"), auditKey,
			audit.Options{Logger: a.log.With("subsystem", "audit"), MaxFileBytes: a.cfg.AuditMaxBytes})
		if err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
		return nil
	}

	cfg, err := vault.ParseEtcdURL(a.cfg.Store)
	if err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	cfg.Logger = a.log.With("subsystem", "store")
	st, err := vault.OpenEtcd(cfg, masterKey)
	if err != nil {
		return fmt.Errorf("open etcd store: %w", err)
	}
	a.store, a.etcd = st, st
	a.etcdPrefix = cmp.Or(cfg.Prefix, vault.DefaultEtcdPrefix)
	a.audit, err = audit.OpenEtcd(st.Client(), auditKey, audit.EtcdOptions{
		Prefix: cfg.Prefix, Host: a.nodeName(), Logger: a.log.With("subsystem", "audit"),
		MaxRecords: a.cfg.AuditEtcdRecords, ExportDir: filepath.Join(a.cfg.StateDir, "audit-etcd"),
	})
	if err != nil {
		return fmt.Errorf("open fleet audit log: %w", err)
	}
	return nil
}

// nodeName names this host in the fleet: its audit chain and schedule
// claims. Default: the host name.
func (a *Agent) nodeName() string {
	if a.cfg.Node != "" {
		return a.cfg.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "keygated"
	}
	return h
}
