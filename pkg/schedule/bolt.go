package schedule

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket layout of the embedded engine.
//
//	schedules   name → JSON Schedule
//	runs        name → bucket: start (unix ns, 8 bytes big-endian) ‖ run ID → JSON Run
//	claims      name → bucket: due (unix s, 8 bytes big-endian) → host
//
// Run keys sort by start time, so the history is read newest first with
// a reverse cursor and trimmed from the front.
var (
	bucketSchedules = []byte("schedules")
	bucketRuns      = []byte("runs")
	bucketClaims    = []byte("claims")
)

// claimHorizon is how long a claim is kept after a newer one of the same
// schedule. Hosts only race for due times of the last few seconds; older
// claims guard nothing.
const claimHorizon = 24 * time.Hour

// boltOpenTimeout bounds the wait for bbolt's file lock, so a second agent
// on the same state directory fails clearly instead of hanging.
const boltOpenTimeout = time.Second

// Bolt is the embedded Store: one bbolt file of its own. keygated keeps it
// at STATE/schedules.db, beside the vault store's file rather than in it:
// the vault store owns its bbolt handle and closes and reopens it whenever
// it compacts away purged secrets, so no other package can hold that
// handle, and bbolt lets only one handle open a file.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens the store at path, creating the file with mode 0600 if
// absent.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltOpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("open schedule store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSchedules, bucketRuns, bucketClaims} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open schedule store %s: %w", path, err), db.Close())
	}
	return &Bolt{db: db}, nil
}

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

// CreateSchedule stores a new schedule.
func (b *Bolt) CreateSchedule(s Schedule) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketSchedules)
		if bk.Get([]byte(s.Name)) != nil {
			return fmt.Errorf("schedule %q: %w", s.Name, ErrExists)
		}
		return putJSON(bk, []byte(s.Name), s)
	})
}

// UpdateSchedule applies fn to the stored schedule in one transaction.
func (b *Bolt) UpdateSchedule(name string, fn func(*Schedule) error) (Schedule, error) {
	var s Schedule
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketSchedules)
		if err := getSchedule(bk, name, &s); err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		return putJSON(bk, []byte(name), s)
	})
	if err != nil {
		return Schedule{}, err
	}
	return s, nil
}

// DeleteSchedule removes a schedule with its runs and claims.
func (b *Bolt) DeleteSchedule(name string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketSchedules)
		if bk.Get([]byte(name)) == nil {
			return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
		if err := bk.Delete([]byte(name)); err != nil {
			return err
		}
		for _, parent := range [][]byte{bucketRuns, bucketClaims} {
			err := tx.Bucket(parent).DeleteBucket([]byte(name))
			if err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
}

// Schedule returns one schedule.
func (b *Bolt) Schedule(name string) (Schedule, error) {
	var s Schedule
	err := b.db.View(func(tx *bolt.Tx) error {
		return getSchedule(tx.Bucket(bucketSchedules), name, &s)
	})
	return s, err
}

// Schedules lists every schedule, sorted by name (bbolt's key order).
func (b *Bolt) Schedules() ([]Schedule, error) {
	var out []Schedule
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSchedules).ForEach(func(k, v []byte) error {
			var s Schedule
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("decode schedule %q: %w", k, err)
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

// PutRun stores r and trims its schedule's history to keep runs.
func (b *Bolt) PutRun(r Run, keep int) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSchedules).Get([]byte(r.Schedule)) == nil {
			return fmt.Errorf("schedule %q: %w", r.Schedule, ErrNotFound)
		}
		runs, err := tx.Bucket(bucketRuns).CreateBucketIfNotExists([]byte(r.Schedule))
		if err != nil {
			return err
		}
		key := runKey(r)
		replaced := runs.Get(key) != nil
		if err := putJSON(runs, key, r); err != nil {
			return err
		}
		if replaced || keep <= 0 {
			return nil
		}
		return trim(runs, keep)
	})
}

// trim deletes the oldest keys of bk until at most keep remain.
func trim(bk *bolt.Bucket, keep int) error {
	n := 0
	c := bk.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	for k, _ := c.First(); k != nil && n > keep; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
		n--
	}
	return nil
}

// Runs returns a schedule's runs, newest first.
func (b *Bolt) Runs(name string, limit int) ([]Run, error) {
	var out []Run
	err := b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSchedules).Get([]byte(name)) == nil {
			return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
		runs := tx.Bucket(bucketRuns).Bucket([]byte(name))
		if runs == nil {
			return nil
		}
		c := runs.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode run %x of %q: %w", k, name, err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Claim reserves (name, due) for host unless another host holds it.
func (b *Bolt) Claim(_ context.Context, name string, due time.Time, host string) (bool, error) {
	won := false
	err := b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSchedules).Get([]byte(name)) == nil {
			return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
		claims, err := tx.Bucket(bucketClaims).CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		key := unixKey(due.Unix())
		if holder := claims.Get(key); holder != nil {
			won = string(holder) == host
			return nil
		}
		if err := claims.Put(key, []byte(host)); err != nil {
			return err
		}
		won = true
		return dropBefore(claims, unixKey(due.Add(-claimHorizon).Unix()))
	})
	return won, err
}

// dropBefore deletes the keys of bk that sort before limit.
func dropBefore(bk *bolt.Bucket, limit []byte) error {
	c := bk.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func getSchedule(bk *bolt.Bucket, name string, s *Schedule) error {
	v := bk.Get([]byte(name))
	if v == nil {
		return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
	}
	if err := json.Unmarshal(v, s); err != nil {
		return fmt.Errorf("decode schedule %q: %w", name, err)
	}
	return nil
}

func putJSON(bk *bolt.Bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bk.Put(key, b)
}

// runKey orders a schedule's runs by start time; the ID breaks ties.
func runKey(r Run) []byte {
	return append(unixKey(r.Started.UnixNano()), r.ID...)
}

// unixKey encodes a non-negative time so that keys sort like the times.
func unixKey(t int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t))
}
