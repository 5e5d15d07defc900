module github.com/VividCortex/gohistogram

go 1.20
