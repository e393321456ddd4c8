package main

import (
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chart draws the ratios (dlock against its baseline in each comparison)
// as bars, with the goal line at 1.
func chart(rows []row, path string) error {
	var vals plotter.Values
	var names []string
	for _, r := range rows {
		if r.vs == "" {
			continue
		}
		vals = append(vals, r.ratio)
		names = append(names, r.name+"\nvs "+r.vs)
	}
	p := plot.New()
	p.Title.Text = "dlock against its baselines (ratio; > 1 is better for dlock except µs/call and generator time)"
	p.Y.Label.Text = "ratio"
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return err
	}
	p.Add(bars)
	p.NominalX(names...)
	one, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(vals)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	p.Add(one)
	return p.Save(vg.Length(120+90*len(vals)), 12*vg.Centimeter, path)
}
