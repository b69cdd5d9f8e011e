package vault

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// EtcdScheme starts a store URL that names an etcd cluster.
const EtcdScheme = "etcd://"

// ParseEtcdURL parses the --store form of an etcd configuration:
//
//	etcd://HOST:PORT[,HOST:PORT...][?OPTION=VALUE&...]
//
// Options: prefix (key prefix, default DefaultEtcdPrefix), cert and key
// (client certificate and key files), ca (file of roots for the servers'
// certificates), grace and dial-timeout (Go durations such as "30s"). Any
// of cert, key or ca turns on TLS. IPv6 hosts are written in brackets.
// Errors wrap ErrInvalid; the URL holds file names, never key material, so
// it may be logged.
func ParseEtcdURL(s string) (EtcdConfig, error) {
	var cfg EtcdConfig
	rest, ok := strings.CutPrefix(s, EtcdScheme)
	if !ok {
		return cfg, fmt.Errorf("store url %q: %w: want %sHOST:PORT,...", s, ErrInvalid, EtcdScheme)
	}
	hosts, query, _ := strings.Cut(rest, "?")
	if strings.Contains(hosts, "/") {
		return cfg, fmt.Errorf("store url %q: %w: no path allowed; set the key prefix with ?prefix=", s, ErrInvalid)
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return cfg, fmt.Errorf("store url %q: %w: endpoint %q is not HOST:PORT", s, ErrInvalid, h)
		}
		cfg.Endpoints = append(cfg.Endpoints, h)
	}

	values, err := url.ParseQuery(query)
	if err != nil {
		return cfg, fmt.Errorf("store url %q: %w: %w", s, ErrInvalid, err)
	}
	for name, vals := range values {
		if len(vals) != 1 {
			return cfg, fmt.Errorf("store url %q: %w: option %s given %d times", s, ErrInvalid, name, len(vals))
		}
		if err := cfg.setOption(name, vals[0]); err != nil {
			return cfg, fmt.Errorf("store url %q: %w", s, err)
		}
	}
	return cfg, nil
}

// setOption sets one option of an etcd store URL.
func (c *EtcdConfig) setOption(name, value string) error {
	switch name {
	case "prefix":
		c.Prefix = value
	case "cert":
		c.CertFile = value
	case "key":
		c.KeyFile = value
	case "ca":
		c.CAFile = value
	case "grace", "dial-timeout":
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%w: %s=%q is not a positive duration", ErrInvalid, name, value)
		}
		if name == "grace" {
			c.Grace = d
		} else {
			c.DialTimeout = d
		}
	default:
		return fmt.Errorf("%w: unknown option %q", ErrInvalid, name)
	}
	return nil
}
