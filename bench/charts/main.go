// Command charts draws the benchmark's PNG charts from the chart specs
// the benchmark writes (bench/internal/harness/charts.go): bars by group, or lines. It is a
// module of its own so that chatfleet's module does not depend on
// gonum/plot; the benchmark builds and runs it.
//
//	charts -spec charts.json -out bench/results
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

type spec struct {
	File   string   `json:"file"`
	Title  string   `json:"title"`
	Kind   string   `json:"kind"`
	XLabel string   `json:"x_label"`
	YLabel string   `json:"y_label"`
	LogY   bool     `json:"log_y"`
	Groups []string `json:"groups"`
	Series []series `json:"series"`
}

type series struct {
	Name   string    `json:"name"`
	X      []float64 `json:"x"`
	Y      []float64 `json:"y"`
	Dashed bool      `json:"dashed"`
}

func main() {
	specPath := flag.String("spec", "", "chart specs (JSON array)")
	out := flag.String("out", ".", "directory for the PNGs")
	flag.Parse()
	if err := run(*specPath, *out); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

func run(specPath, out string) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var specs []spec
	if err := json.Unmarshal(b, &specs); err != nil {
		return err
	}
	for _, s := range specs {
		p, err := draw(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.File, err)
		}
		if err := p.Save(9*vg.Inch, 5*vg.Inch, filepath.Join(out, s.File)); err != nil {
			return err
		}
	}
	return nil
}

func draw(s spec) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = s.Title
	p.X.Label.Text = s.XLabel
	p.Y.Label.Text = s.YLabel
	p.Legend.Top = true
	p.Legend.Left = true
	switch s.Kind {
	case "bars":
		return p, bars(p, s)
	case "lines":
		return p, lines(p, s)
	}
	return nil, fmt.Errorf("unknown kind %q", s.Kind)
}

// bars draws grouped bars. On a log scale the bars are drawn on a linear
// axis of log10(value), starting at the power of ten below the smallest
// value (gonum's log scale cannot draw a bar from 0), with ticks labelled
// in the values' unit.
func bars(p *plot.Plot, s spec) error {
	n := len(s.Series)
	w := vg.Points(math.Min(30, 360/float64(max(1, n*len(s.Groups)))))
	lo, hi := math.Inf(1), 0.0
	for _, se := range s.Series {
		for _, v := range se.Y {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	base := 0.0
	if s.LogY {
		if math.IsInf(lo, 1) {
			lo, hi = 1, 10
		}
		base = math.Floor(math.Log10(lo))
		top := math.Ceil(math.Log10(hi))
		if top == base {
			top++
		}
		p.Y.Scale = plot.LinearScale{}
		p.Y.Tick.Marker = plot.TickerFunc(func(_, _ float64) []plot.Tick {
			var ticks []plot.Tick
			for e := base; e <= top; e++ {
				ticks = append(ticks, plot.Tick{Value: e - base, Label: strconv.FormatFloat(math.Pow(10, e), 'g', -1, 64)})
			}
			return ticks
		})
		p.Y.Max = (top - base) * 1.3
	}
	for i, se := range s.Series {
		vals := make(plotter.Values, len(s.Groups))
		for j := range vals {
			if j < len(se.Y) {
				vals[j] = se.Y[j]
			}
			if s.LogY {
				vals[j] = math.Max(0, math.Log10(math.Max(vals[j], math.Pow(10, base)))-base)
			}
		}
		bc, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = w * vg.Length(float64(i)-float64(n-1)/2)
		p.Add(bc)
		p.Legend.Add(se.Name, bc)
	}
	p.NominalX(s.Groups...)
	p.Y.Min = 0
	if !s.LogY {
		p.Y.Max *= 1.3 // room for the legend
	}
	grid := plotter.NewGrid()
	grid.Vertical.Width = 0
	p.Add(grid)
	return nil
}

func lines(p *plot.Plot, s spec) error {
	for i, se := range s.Series {
		xys := make(plotter.XYs, len(se.Y))
		for j := range xys {
			xys[j].X, xys[j].Y = se.X[j], se.Y[j]
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		sc.Color = plotutil.Color(i)
		if se.Dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l, sc)
		p.Legend.Add(se.Name, l, sc)
	}
	p.Y.Min = 0
	p.Y.Max *= 1.15
	p.Add(plotter.NewGrid())
	return nil
}
