package audit

import (
	"encoding/json"
	"fmt"
	"io"
)

// query scans the log in r and returns the records matching f, oldest
// first, keeping only the newest f.Limit if it is set.
func query(r io.Reader, f Filter) ([]Record, error) {
	var out []Record
	lines := newLineScanner(r)
	for n := 1; lines.Scan(); n++ {
		line := lines.Bytes()
		if line[len(line)-1] != lineEnd {
			break // a torn tail is not a record
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil, fmt.Errorf("query audit log: line %d: %w: %w", n, err, ErrTampered)
		}
		if !f.match(&rec) {
			continue
		}

		out = append(out, rec)
		// Keep memory near 2*Limit however many records match.
		if f.Limit > 0 && len(out) >= 2*f.Limit {
			out = append(out[:0], out[len(out)-f.Limit:]...)
		}
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("query audit log: %w", err)
	}

	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}
