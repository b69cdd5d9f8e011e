package schedule

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTP(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a")
	var changes []string
	failChange := false
	api := &HTTP{Scheduler: s, Changed: func(r *http.Request, kind, name string) error {
		changes = append(changes, kind+" "+name)
		if failChange {
			return errors.New("audit log broken")
		}
		return nil
	}}
	mux := http.NewServeMux()
	api.Register(mux)
	do := func(method, path, body string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec.Code, rec.Body.String()
	}

	create := `{"name":"ping","cron":"@every 5s","argv":["true"]}`
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"create", "POST", "/v1/schedules", create, 201, `"name":"ping"`},
		{"duplicate", "POST", "/v1/schedules", create, 409, "already exists"},
		{"invalid", "POST", "/v1/schedules", `{"name":"x","cron":"@every 5s","argv":[]}`, 400, "no command"},
		{"unknown field", "POST", "/v1/schedules", `{"name":"x","colour":"red"}`, 400, "malformed"},
		{"list", "GET", "/v1/schedules", "", 200, `"cron":"@every 5s"`},
		{"show", "GET", "/v1/schedules/ping", "", 200, `"timezone":"UTC"`},
		{"show unknown", "GET", "/v1/schedules/nope", "", 404, `schedule \"nope\": not found`},
		{"pause", "POST", "/v1/schedules/ping/pause", "", 200, `"paused":true`},
		{"resume", "POST", "/v1/schedules/ping/resume", "", 200, `"paused":false`},
		{"run now", "POST", "/v1/schedules/ping/run-now", "", 202, `"trigger":"run-now"`},
		{"runs", "GET", "/v1/schedules/ping/runs?limit=1", "", 200, `"schedule":"ping"`},
		{"bad limit", "GET", "/v1/schedules/ping/runs?limit=many", "", 400, "limit"},
		{"remove", "DELETE", "/v1/schedules/ping", "", 204, ""},
		{"remove again", "DELETE", "/v1/schedules/ping", "", 404, "not found"},
		{"empty list", "GET", "/v1/schedules", "", 200, "[]"},
	}
	for _, tt := range tests {
		status, body := do(tt.method, tt.path, tt.body)
		if status != tt.status || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tt.name, status, body, tt.status, tt.contains)
		}
		if status >= 400 {
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("%s: error body %q", tt.name, body)
			}
		}
	}
	want := []string{"schedule.create ping", "schedule.pause ping", "schedule.resume ping",
		"schedule.run-now ping", "schedule.remove ping"}
	if strings.Join(changes, ",") != strings.Join(want, ",") {
		t.Errorf("changes = %q, want %q", changes, want)
	}

	// A change whose audit record fails is reported as failed.
	failChange = true
	if status, body := do("POST", "/v1/schedules", create); status != 500 || !strings.Contains(body, "audit log broken") {
		t.Errorf("create with failing Changed: %d %s", status, body)
	}
}
