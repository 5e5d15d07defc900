// Package prometheus is a local stand-in with the API syzkaller's pkg/stat uses; only
// compiled, never run.
package prometheus

type GaugeOpts struct{ Name, Help string }
type Collector interface{}

func NewGaugeFunc(o GaugeOpts, f func() float64) Collector { return nil }
func Register(c Collector) error                          { return nil }
