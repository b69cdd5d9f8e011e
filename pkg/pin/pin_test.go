package pin

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a settable fake time source for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	addrA = netip.MustParseAddr("198.51.100.10")
	addrB = netip.MustParseAddr("203.0.113.7")
)

func TestCheck(t *testing.T) {
	tbl := New(Config{Now: newClock().Now})
	tbl.Add("sb1", addrA, "API.Example.test.", time.Minute)

	tests := []struct {
		name    string
		sandbox string
		addr    netip.Addr
		host    string
		want    bool
	}{
		{"exact", "sb1", addrA, "api.example.test", true},
		{"case and trailing dot", "sb1", addrA, "api.EXAMPLE.test.", true},
		{"v4-mapped v6", "sb1", netip.MustParseAddr("::ffff:198.51.100.10"), "api.example.test", true},
		{"other sandbox", "sb2", addrA, "api.example.test", false},
		{"other address", "sb1", addrB, "api.example.test", false},
		{"other name", "sb1", addrA, "evil.example.test", false},
		{"parent name", "sb1", addrA, "example.test", false},
		{"empty sandbox", "", addrA, "api.example.test", false},
		{"invalid address", "sb1", netip.Addr{}, "api.example.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tbl.Check(tt.sandbox, tt.addr, tt.host); got != tt.want {
				t.Errorf("Check(%q, %v, %q) = %v, want %v", tt.sandbox, tt.addr, tt.host, got, tt.want)
			}
		})
	}
}

func TestAddMappedStoredAsV4(t *testing.T) {
	tbl := New(Config{Now: newClock().Now})
	tbl.Add("sb1", netip.MustParseAddr("::ffff:198.51.100.10"), "api.example.test", time.Minute)

	if !tbl.Check("sb1", addrA, "api.example.test") {
		t.Error("pin added under a v4-mapped address does not match the v4 address")
	}
	if got := tbl.Names("sb1", addrA); !slices.Equal(got, []string{"api.example.test"}) {
		t.Errorf("Names = %q", got)
	}
}

func TestSandboxIsolation(t *testing.T) {
	tbl := New(Config{Now: newClock().Now})
	tbl.Add("sbA", addrA, "a.example.test", time.Minute)
	tbl.Add("sbB", addrA, "b.example.test", time.Minute)

	tests := []struct {
		sandbox, host string
		want          bool
	}{
		{"sbA", "a.example.test", true},
		{"sbA", "b.example.test", false},
		{"sbB", "b.example.test", true},
		{"sbB", "a.example.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.sandbox+"/"+tt.host, func(t *testing.T) {
			if got := tbl.Check(tt.sandbox, addrA, tt.host); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}

	tbl.DropSandbox("sbA")
	if tbl.Check("sbA", addrA, "a.example.test") {
		t.Error("pin survived DropSandbox")
	}
	if !tbl.Check("sbB", addrA, "b.example.test") {
		t.Error("DropSandbox(sbA) removed a pin of sbB")
	}
	if got := tbl.Len(); got != 1 {
		t.Errorf("Len after drop = %d, want 1", got)
	}
}

func TestExpiry(t *testing.T) {
	tests := []struct {
		name   string
		floor  time.Duration
		ttl    time.Duration
		liveAt time.Duration // still live just before this age
		deadAt time.Duration // expired at this age
	}{
		{"ttl above floor", 10 * time.Second, 30 * time.Second, 29 * time.Second, 30 * time.Second},
		{"ttl below floor", 10 * time.Second, 2 * time.Second, 9 * time.Second, 10 * time.Second},
		{"zero ttl", 10 * time.Second, 0, 9 * time.Second, 10 * time.Second},
		{"default floor", 0, time.Second, DefaultFloor - time.Second, DefaultFloor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tbl := New(Config{Floor: tt.floor, Now: clk.Now})
			tbl.Add("sb1", addrA, "api.example.test", tt.ttl)

			clk.Advance(tt.liveAt)
			if !tbl.Check("sb1", addrA, "api.example.test") {
				t.Fatalf("pin expired before %v", tt.liveAt)
			}
			clk.Advance(tt.deadAt - tt.liveAt)
			if tbl.Check("sb1", addrA, "api.example.test") {
				t.Fatalf("pin still live at %v", tt.deadAt)
			}
			if got := tbl.Names("sb1", addrA); len(got) != 0 {
				t.Errorf("Names of expired pin = %q", got)
			}
			if got := tbl.Len(); got != 0 {
				t.Errorf("Len after expiry = %d, want 0", got)
			}
		})
	}
}

func TestReAddExtendsNeverShortens(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, Now: clk.Now})

	tbl.Add("sb1", addrA, "api.example.test", 10*time.Second)
	clk.Advance(8 * time.Second)
	tbl.Add("sb1", addrA, "api.example.test", 10*time.Second) // now expires at 18s
	tbl.Add("sb1", addrA, "api.example.test", time.Second)    // must not shorten

	clk.Advance(9 * time.Second) // 17s
	if !tbl.Check("sb1", addrA, "api.example.test") {
		t.Fatal("re-added pin did not extend, or a shorter re-add shortened it")
	}
	if got := tbl.Len(); got != 1 {
		t.Errorf("Len = %d, want 1: a re-add must not duplicate", got)
	}
	clk.Advance(time.Second) // 18s
	if tbl.Check("sb1", addrA, "api.example.test") {
		t.Error("pin outlived its extended expiry")
	}
}

func TestMaxLifetime(t *testing.T) {
	tests := []struct {
		name     string
		floor    time.Duration
		maxLife  time.Duration
		ttl      time.Duration
		wantLife time.Duration // the pin is live just before this age, gone at it
	}{
		{"ttl within bounds", time.Minute, time.Hour, 10 * time.Minute, 10 * time.Minute},
		{"ttl above cap", time.Minute, time.Hour, 21 * 24 * time.Hour, time.Hour},
		{"default cap", time.Minute, 0, 21 * 24 * time.Hour, DefaultMaxLifetime},
		{"cap below floor raised to floor", time.Minute, time.Second, time.Hour, time.Minute},
		{"ttl below floor", time.Minute, time.Hour, time.Second, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tbl := New(Config{Floor: tt.floor, MaxLifetime: tt.maxLife, Now: clk.Now})
			if got := tbl.MaxLifetime(); got < tt.wantLife {
				t.Errorf("MaxLifetime() = %v, below the pin's lifetime %v", got, tt.wantLife)
			}
			tbl.Add("sb1", addrA, "api.example.test", tt.ttl)

			clk.Advance(tt.wantLife - time.Second)
			if !tbl.Check("sb1", addrA, "api.example.test") {
				t.Fatalf("pin expired before %v", tt.wantLife)
			}
			clk.Advance(time.Second)
			if tbl.Check("sb1", addrA, "api.example.test") {
				t.Fatalf("pin still live at %v", tt.wantLife)
			}
		})
	}
}

func TestNamesSortedAndLive(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, Now: clk.Now})
	tbl.Add("sb1", addrA, "c.example.test", time.Minute)
	tbl.Add("sb1", addrA, "a.example.test", time.Minute)
	tbl.Add("sb1", addrA, "short.example.test", time.Second)
	tbl.Add("sb1", addrA, "B.example.test", time.Minute)
	tbl.Add("sb1", addrB, "other.example.test", time.Minute)
	clk.Advance(2 * time.Second)

	want := []string{"a.example.test", "b.example.test", "c.example.test"}
	if got := tbl.Names("sb1", addrA); !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
}

func TestEviction(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, MaxEntries: 3, Now: clk.Now})

	tbl.Add("sb1", addrA, "long.example.test", time.Hour)
	tbl.Add("sb1", addrA, "first.example.test", time.Minute)
	tbl.Add("sb1", addrA, "second.example.test", time.Minute) // same expiry, added later
	tbl.Add("sb1", addrA, "new.example.test", time.Minute)    // evicts first
	tbl.Add("sb2", addrB, "newer.example.test", time.Minute)  // evicts second

	tests := []struct {
		host string
		want bool
	}{
		{"long.example.test", true},
		{"first.example.test", false},
		{"second.example.test", false},
		{"new.example.test", true},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := tbl.Check("sb1", addrA, tt.host); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
	if !tbl.Check("sb2", addrB, "newer.example.test") {
		t.Error("newest pin missing")
	}
	if got := tbl.Len(); got != 3 {
		t.Errorf("Len = %d, want the cap 3", got)
	}
}

func TestEvictionSparesOtherSandboxes(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, MaxEntries: 10, Now: clk.Now})
	tbl.Add("quiet", addrA, "a.example.test", time.Second) // expires before any of the hog's
	tbl.Add("quiet", addrB, "b.example.test", time.Second)
	for i := range 100 {
		clk.Advance(time.Millisecond)
		tbl.Add("hog", addrA, fmt.Sprintf("h%d.example.test", i), time.Minute)
	}

	for _, host := range []string{"a.example.test", "b.example.test"} {
		addr := addrA
		if host == "b.example.test" {
			addr = addrB
		}
		if !tbl.Check("quiet", addr, host) {
			t.Errorf("pin of the quiet sandbox for %s evicted by another sandbox", host)
		}
	}
	if !tbl.Check("hog", addrA, "h99.example.test") {
		t.Error("the newest pin is missing")
	}
	if tbl.Check("hog", addrA, "h0.example.test") {
		t.Error("the hog's oldest pin survived")
	}
	if got := tbl.Len(); got != 10 {
		t.Errorf("Len = %d, want the cap 10", got)
	}
}

func TestExpiredMakeRoomBeforeEviction(t *testing.T) {
	tests := []struct {
		name         string
		expiredOwner string // sandbox of the expired pin
	}{
		{"same sandbox", "sb1"},
		{"other sandbox", "sb2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tbl := New(Config{Floor: time.Second, MaxEntries: 2, Now: clk.Now})
			tbl.Add(tt.expiredOwner, addrA, "short.example.test", time.Second)
			tbl.Add("sb1", addrA, "long.example.test", time.Hour)
			clk.Advance(2 * time.Second)

			tbl.Add("sb1", addrA, "new.example.test", time.Hour)
			if !tbl.Check("sb1", addrA, "long.example.test") {
				t.Error("a live pin was evicted while an expired one could be swept")
			}
			if !tbl.Check("sb1", addrA, "new.example.test") {
				t.Error("the new pin is missing")
			}
		})
	}
}

func TestQueueStaysBounded(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, Now: clk.Now})
	for i := range 10_000 {
		clk.Advance(time.Millisecond)
		tbl.Add("sb1", addrA, "api.example.test", time.Hour) // extends every time
		tbl.Add(fmt.Sprintf("drop%d", i%5), addrB, "x.example.test", time.Hour)
		if i%7 == 0 {
			tbl.DropSandbox(fmt.Sprintf("drop%d", i%5))
		}
	}

	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	for id, sb := range tbl.sandboxes {
		if n, q := sb.n, sb.expiries.Len(); q > 2*n+64 {
			t.Errorf("expiry queue of %s holds %d deadlines for %d pins", id, q, n)
		}
	}
	if len(tbl.sandboxes) > 6 {
		t.Errorf("%d sandboxes held, want at most 6", len(tbl.sandboxes))
	}
}

func TestConcurrent(t *testing.T) {
	clk := newClock()
	tbl := New(Config{Floor: time.Second, MaxEntries: 500, Now: clk.Now})

	var wg sync.WaitGroup
	for w := range 8 {
		sandbox := fmt.Sprintf("sb%d", w)
		wg.Go(func() {
			for i := range 2000 {
				addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 50)})
				name := fmt.Sprintf("h%d.example.test", i%20)
				tbl.Add(sandbox, addr, name, time.Duration(i%3)*time.Second)
				tbl.Check(sandbox, addr, name)
				tbl.Names(sandbox, addr)
				if i%500 == 0 {
					tbl.DropSandbox(sandbox)
					clk.Advance(time.Second)
				}
				// A pin of this sandbox can never satisfy another one.
				if tbl.Check("other", addr, name) {
					t.Errorf("sandbox %q's pin satisfied another sandbox", sandbox)
					return
				}
			}
		})
	}
	wg.Wait()

	if got := tbl.Len(); got > 500 {
		t.Errorf("Len = %d, above the cap 500", got)
	}
}
