package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart size: wide enough for six bars in three groups with a legend.
const (
	chartWidth  = 8 * vg.Inch
	chartHeight = 4.5 * vg.Inch
)

var protoTitle = map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2"}

// writeCharts draws throughput and latency per row, and the sandbox create
// times, into dir as PNG files, and returns their paths.
func writeCharts(r *results, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name)
		if err := p.Save(chartWidth, chartHeight, path); err != nil {
			return fmt.Errorf("save %s: %w", name, err)
		}
		paths = append(paths, path)
		return nil
	}
	rows := r.measuredRows()
	if len(rows) > 0 {
		for _, newConn := range []bool{false, true} {
			for _, proto := range []string{"h1", "h2"} {
				p, err := r.throughputChart(rows, proto, newConn)
				if err != nil {
					return nil, err
				}
				name := "throughput-" + proto + map[bool]string{false: "-keepalive", true: "-newconn"}[newConn] + ".png"
				if err := save(p, name); err != nil {
					return nil, err
				}
			}
		}
		for _, proto := range []string{"h1", "h2"} {
			p, err := r.latencyChart(rows, proto)
			if err != nil {
				return nil, err
			}
			if err := save(p, "latency-"+proto+".png"); err != nil {
				return nil, err
			}
		}
	}
	if r.scale != nil && len(r.scale.create) > 0 {
		p, err := createChart(r.scale)
		if err != nil {
			return nil, err
		}
		if err := save(p, "sandbox-create.png"); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// measuredRows are the rows that have figures.
func (r *results) measuredRows() []*rowResult {
	var out []*rowResult
	for _, rr := range r.rows {
		if rr.unsupported == "" && len(rr.steps) > 0 {
			out = append(out, rr)
		}
	}
	return out
}

// connCounts returns the connection counts of r's steps, in order.
func (r *results) connCounts() []int {
	var out []int
	seen := map[int]bool{}
	for _, s := range r.specs {
		if !seen[s.conns] {
			seen[s.conns] = true
			out = append(out, s.conns)
		}
	}
	return out
}

// withFigures returns the rows with at least one figure for proto and
// mode: a peer without HTTP/2 is left out of the HTTP/2 charts.
func withFigures(rows []*rowResult, proto string, newConn bool) []*rowResult {
	var out []*rowResult
	for _, rr := range rows {
		for _, s := range rr.steps {
			if s.spec.proto == proto && s.spec.newConn == newConn && s.rps > 0 {
				out = append(out, rr)
				break
			}
		}
	}
	return out
}

// throughputChart is requests/s per row, grouped by connection count.
func (r *results) throughputChart(rows []*rowResult, proto string, newConn bool) (*plot.Plot, error) {
	rows = withFigures(rows, proto, newConn)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s: requests/s (2xx)", protoTitle[proto], loadSpec{newConn: newConn}.mode())
	p.Y.Label.Text = "requests/s"
	p.X.Label.Text = "concurrent connections"
	conns := r.connCounts()
	var labels []string
	for _, c := range conns {
		labels = append(labels, strconv.Itoa(c))
	}
	groups := make([]plotter.Values, len(rows))
	for i, rr := range rows {
		for _, c := range conns {
			s, _ := rr.step(loadSpec{proto: proto, conns: c, newConn: newConn})
			groups[i] = append(groups[i], s.rps)
		}
	}
	names := make([]string, len(rows))
	for i, rr := range rows {
		names[i] = rr.name
	}
	if err := addBars(p, groups, names); err != nil {
		return nil, err
	}
	p.NominalX(labels...)
	return p, nil
}

// latencyChart is p50 and p99 per row at the most connections, keep-alive.
func (r *results) latencyChart(rows []*rowResult, proto string) (*plot.Plot, error) {
	rows = withFigures(rows, proto, false)
	conns := r.connCounts()
	c := conns[len(conns)-1]
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, keep-alive, %d connections: latency", protoTitle[proto], c)
	p.Y.Label.Text = "milliseconds"
	var p50, p99 plotter.Values
	var labels []string
	for _, rr := range rows {
		s, _ := rr.step(loadSpec{proto: proto, conns: c})
		p50 = append(p50, ms(s.p50))
		p99 = append(p99, ms(s.p99))
		labels = append(labels, rr.name)
	}
	if err := addBars(p, []plotter.Values{p50, p99}, []string{"p50", "p99"}); err != nil {
		return nil, err
	}
	p.NominalX(labels...)
	return p, nil
}

// addBars adds one bar series per group, side by side, with a legend.
func addBars(p *plot.Plot, groups []plotter.Values, names []string) error {
	w := vg.Points(60 / float64(max(len(groups), 1)))
	if len(groups) == 0 || len(groups[0]) == 0 {
		return nil
	}
	for i, vals := range groups {
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(float64(i)-float64(len(groups)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(names[i], bars)
	}
	// Head room above the tallest bar keeps the legend clear of the bars,
	// and half a slot either side keeps the outer groups off the axes.
	top := 0.0
	for _, vals := range groups {
		for _, v := range vals {
			top = max(top, v)
		}
	}
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, max(top, 1)*(1.15+0.08*float64(len(groups)))
	p.X.Min, p.X.Max = -0.7, float64(len(groups[0]))-0.3
	return nil
}

// createChart plots each sandbox create time against the sandboxes live.
func createChart(s *scaleResults) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "sandbox create time by sandboxes already live"
	p.X.Label.Text = "sandboxes live"
	p.Y.Label.Text = "milliseconds"
	pts := make(plotter.XYs, len(s.create))
	for i, d := range s.create {
		pts[i] = plotter.XY{X: float64(i), Y: ms(d)}
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Radius = vg.Points(1.5)
	sc.GlyphStyle.Color = plotutil.Color(0)
	p.Add(sc)
	p.Y.Min = 0
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
