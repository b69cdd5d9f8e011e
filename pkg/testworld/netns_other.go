//go:build !linux

package testworld

// network is unavailable off Linux; Start fails with ErrNotSupported.
type network struct{}

func openNetwork(string, netPlan) (*network, error) {
	return nil, ErrNotSupported
}

func (*network) do(func() error) error { return ErrNotSupported }

func (*network) close() error { return nil }
