package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Kinds of change made through the API, passed to HTTP.Changed. The agent
// records them in the audit log under these names.
const (
	ChangeCreate = "schedule.create"
	ChangePause  = "schedule.pause"
	ChangeResume = "schedule.resume"
	ChangeRemove = "schedule.remove"
	ChangeRunNow = "schedule.run-now"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// HTTP serves the schedule endpoints of the control API, as documented in
// package api (pkg/api/schedule.go). Errors are answered as the rest of
// the API does: a JSON {"error": "..."} with a status from httpStatus.
type HTTP struct {
	Scheduler *Scheduler
	// Changed, if not nil, is called after every change made through
	// these endpoints with the request (whose caller is the actor), the
	// change's kind (ChangeCreate, ...) and the schedule's name. If it
	// fails, the caller is answered 500 with its error: the agent fails
	// when the change's audit record could not be written.
	Changed func(r *http.Request, kind, name string) error
}

// Register mounts the endpoints on mux. Access control is the mux's
// server's, as for every other endpoint.
func (h *HTTP) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/schedules", h.create)
	mux.HandleFunc("GET /v1/schedules", h.list)
	mux.HandleFunc("GET /v1/schedules/{name}", h.show)
	mux.HandleFunc("DELETE /v1/schedules/{name}", h.remove)
	mux.HandleFunc("POST /v1/schedules/{name}/pause", h.pause)
	mux.HandleFunc("POST /v1/schedules/{name}/resume", h.resume)
	mux.HandleFunc("POST /v1/schedules/{name}/run-now", h.runNow)
	mux.HandleFunc("GET /v1/schedules/{name}/runs", h.runs)
}

func (h *HTTP) create(w http.ResponseWriter, r *http.Request) {
	var spec Spec
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("malformed request body: %w", err))
		return
	}
	sc, err := h.Scheduler.Create(r.Context(), spec)
	h.changed(w, r, ChangeCreate, spec.Name, http.StatusCreated, sc, err)
}

func (h *HTTP) list(w http.ResponseWriter, r *http.Request) {
	scheds, err := h.Scheduler.List(r.Context())
	if scheds == nil {
		scheds = []Schedule{}
	}
	respond(w, http.StatusOK, scheds, err)
}

func (h *HTTP) show(w http.ResponseWriter, r *http.Request) {
	sc, err := h.Scheduler.Show(r.Context(), r.PathValue("name"))
	respond(w, http.StatusOK, sc, err)
}

func (h *HTTP) remove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := h.Scheduler.Remove(r.Context(), name)
	h.changed(w, r, ChangeRemove, name, http.StatusNoContent, nil, err)
}

func (h *HTTP) pause(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sc, err := h.Scheduler.Pause(r.Context(), name)
	h.changed(w, r, ChangePause, name, http.StatusOK, sc, err)
}

func (h *HTTP) resume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sc, err := h.Scheduler.Resume(r.Context(), name)
	h.changed(w, r, ChangeResume, name, http.StatusOK, sc, err)
}

func (h *HTTP) runNow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	run, err := h.Scheduler.RunNow(r.Context(), name)
	h.changed(w, r, ChangeRunNow, name, http.StatusAccepted, run, err)
}

func (h *HTTP) runs(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: limit %q: want a number of runs", ErrInvalid, v))
			return
		}
		limit = n
	}
	runs, err := h.Scheduler.Runs(r.Context(), r.PathValue("name"), limit)
	if runs == nil {
		runs = []Run{}
	}
	respond(w, http.StatusOK, runs, err)
}

// changed answers a change, after reporting it to Changed if it was made.
func (h *HTTP) changed(w http.ResponseWriter, r *http.Request, kind, name string, status int, v any, err error) {
	if err == nil && h.Changed != nil {
		if cerr := h.Changed(r, kind, name); cerr != nil {
			writeError(w, http.StatusInternalServerError, cerr)
			return
		}
	}
	respond(w, status, v, err)
}

func respond(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, httpStatus(err), err)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// httpStatus maps the package's errors to HTTP statuses: the one place
// that decides it.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrBusy):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrStopped):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError writes the API's error body, {"error": "..."}.
func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{err.Error()})
}
