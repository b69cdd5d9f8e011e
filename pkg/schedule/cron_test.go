package schedule

import (
	"errors"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("no zone data for %s: %v", name, err)
	}
	return loc
}

func TestTimingNext(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	anchor := utc("2026-06-01T12:00:00Z").Add(700 * time.Millisecond)
	tests := []struct {
		name, spec, tz string
		after, want    time.Time
	}{
		{"every from anchor", "@every 5s", "", utc("2026-06-01T12:00:03Z"), utc("2026-06-01T12:00:05Z")},
		{"every on a due time", "@every 5s", "", utc("2026-06-01T12:00:05Z"), utc("2026-06-01T12:00:10Z")},
		{"every before anchor", "@every 5s", "", utc("2026-06-01T11:00:00Z"), utc("2026-06-01T12:00:05Z")},
		{"every ignores zone", "@every 1h", "Europe/Berlin", utc("2026-06-01T12:30:00Z"), utc("2026-06-01T13:00:00Z")},
		{"seconds field", "*/10 * * * * *", "", utc("2026-06-01T12:00:03Z"), utc("2026-06-01T12:00:10Z")},
		{"five fields", "*/5 * * * *", "", utc("2026-06-01T12:03:00Z"), utc("2026-06-01T12:05:00Z")},
		{"hourly", "@hourly", "", utc("2026-06-01T12:03:00Z"), utc("2026-06-01T13:00:00Z")},
		{"zone", "0 9 * * *", "Europe/Berlin", utc("2026-06-01T08:00:00Z"), utc("2026-06-02T07:00:00Z")},
		// 2026-03-29: clocks go from 02:00 CET to 03:00 CEST.
		{"daily across spring forward", "0 9 * * *", "Europe/Berlin",
			utc("2026-03-28T08:00:00Z"), utc("2026-03-29T07:00:00Z")},
		{"time in the gap is skipped", "30 2 * * *", "Europe/Berlin",
			utc("2026-03-28T01:30:00Z"), utc("2026-03-30T00:30:00Z")},
		// 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET.
		{"first 02:30 on fall back", "30 2 * * *", "Europe/Berlin",
			utc("2026-10-24T12:00:00Z"), utc("2026-10-25T00:30:00Z")},
		{"repeated 02:30 runs once", "30 2 * * *", "Europe/Berlin",
			utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")},
		{"every-hour spec runs through the repeated hour", "*/30 * * * *", "Europe/Berlin",
			utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:00:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := parseTiming(tt.spec, tt.tz, anchor)
			if err != nil {
				t.Fatal(err)
			}
			if got := tm.next(tt.after); !got.Equal(tt.want) {
				t.Errorf("next(%v) = %v, want %v (%v)", tt.after, got.UTC(), tt.want, tt.want.In(berlin))
			}
		})
	}
}

func TestTimingLatest(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, spec   string
		after, until time.Time
		want         time.Time
	}{
		{"every", "@every 1m", t0, t0.Add(10*time.Minute + 30*time.Second), t0.Add(10 * time.Minute)},
		{"every on the dot", "@every 1m", t0, t0.Add(3 * time.Minute), t0.Add(3 * time.Minute)},
		{"cron", "*/5 * * * *", t0, t0.Add(62 * time.Minute), t0.Add(60 * time.Minute)},
		{"yearly over years", "0 0 1 1 *", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"every second for a year", "* * * * * *", t0, t0.AddDate(1, 0, 0), t0.AddDate(1, 0, 0)},
		{"none", "*/5 * * * *", t0, t0.Add(4 * time.Minute), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := parseTiming(tt.spec, "", t0)
			if err != nil {
				t.Fatal(err)
			}
			if got := tm.latest(tt.after, tt.until); !got.Equal(tt.want) {
				t.Errorf("latest = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseTimingErrors(t *testing.T) {
	tests := []struct{ name, spec, tz string }{
		{"garbage", "every five minutes", ""},
		{"too many fields", "* * * * * * *", ""},
		{"zone in spec", "CRON_TZ=Europe/Berlin 0 9 * * *", ""},
		{"unknown zone", "@hourly", "Mars/Olympus_Mons"},
		{"host zone", "@hourly", "Local"},
		{"never fires", "0 0 30 2 *", ""},
		{"bad every", "@every soon", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTiming(tt.spec, tt.tz, time.Now())
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}
