package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chart draws every comparison's ratio as a horizontal bar, with a line
// at 1.
func chart(rows []row, path string) error {
	var vals plotter.Values
	var names []string
	for i := len(rows) - 1; i >= 0; i-- { // top to bottom in table order
		r := rows[i]
		if r.vs == "" {
			continue
		}
		vals = append(vals, r.ratio)
		names = append(names, shortGroup(r.group)+": "+r.name+" vs "+r.vs)
	}
	p := plot.New()
	p.Title.Text = "dlock against its baselines (ratio; for µs/call and generator time lower is better; for redsync's waits vs dlock's, higher is better for dlock)"
	p.X.Label.Text = "ratio"
	bars, err := plotter.NewBarChart(vals, vg.Points(14))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	p.Add(bars)
	p.NominalY(names...)
	one, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: float64(len(vals)) - 0.5}})
	if err != nil {
		return err
	}
	p.Add(one)
	return p.Save(26*vg.Centimeter, vg.Length(60+22*len(vals)), path)
}

func shortGroup(g string) string {
	g, _, _ = strings.Cut(g, ", 1 key")
	g = strings.Replace(g, "lock acquire+release", "lock cycles", 1)
	g = strings.Replace(g, "contended hand-off", "hand-off", 1)
	if i := strings.Index(g, ", instant job"); i >= 0 {
		g = g[:i]
	}
	return g
}

// readTable parses a table written by render, to redraw its chart.
func readTable(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 8 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "measurement" {
			continue
		}
		r := row{group: strings.TrimSpace(cells[1]), name: strings.TrimSpace(cells[2]), vs: strings.TrimSpace(cells[4])}
		r.ratio, _ = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(cells[5]), "×"), 64)
		rows = append(rows, r)
	}
	return rows, sc.Err()
}
