// Package gohistogram is a local stand-in with the API syzkaller's pkg/stat uses (the Go
// module proxy is not reachable here); it is only compiled, never run.
package gohistogram

type NumericHistogram struct{ n, sum float64 }

func NewHistogram(n int) *NumericHistogram        { return &NumericHistogram{} }
func (h *NumericHistogram) Add(v float64)          { h.n++; h.sum += v }
func (h *NumericHistogram) Mean() float64          { return h.sum / h.n }
func (h *NumericHistogram) Quantile(q float64) float64 { return 0 }
