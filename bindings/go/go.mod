module github.com/rill-engine/rill/bindings/go

go 1.19
