// Command loadclient is a test client the end-to-end tests run inside
// sandboxes: it keeps N requests in flight against one URL for a while and
// prints a JSON summary. Each request carries X-Start, the wall-clock time
// in nanoseconds at which it was sent, so a test can compare what the
// upstream received against when something happened on the host.
//
// The bearer token is read from an environment variable, as an SDK would.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type summary struct {
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Statuses map[string]int64 `json:"statuses"`
	Errors   []string         `json:"errors,omitempty"` // first few transport errors
}

func main() {
	url := flag.String("url", "", "URL to GET")
	n := flag.Int("c", 16, "requests in flight")
	dur := flag.Duration("d", 3*time.Second, "how long to keep sending")
	tokenEnv := flag.String("bearer-env", "", "send Authorization: Bearer $VAR")
	flag.Parse()

	token := os.Getenv(*tokenEnv)
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *n, MaxConnsPerHost: *n},
	}
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		statuses   = map[string]int64{}
		errs       []string
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(*dur)
	for range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodGet, *url, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				req.Header.Set("X-Start", strconv.FormatInt(time.Now().UnixNano(), 10))
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
				} else {
					statuses[strconv.Itoa(resp.StatusCode)]++
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
				mu.Unlock()
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	out, _ := json.Marshal(summary{OK: ok.Load(), Failed: failed.Load(), Statuses: statuses, Errors: errs})
	fmt.Println(string(out))
}
