// Command rill-server serves an OpenAI-compatible Responses API from one rill engine.
//
//	rill-server --model models/SmolLM2-135M-Instruct.Q4_1.gguf --addr 127.0.0.1:8080
//
// POST /v1/responses takes a Responses API request body: with "stream": true it answers
// with Server-Sent Events, one per rill event; otherwise with the final Response object.
// GET /stats answers with rill's stats JSON. A client that disconnects cancels its
// request in rill.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	rill "github.com/rill-engine/rill/bindings/go"
)

func main() {
	model := flag.String("model", os.Getenv("RILL_MODEL"), "path to a GGUF model (default $RILL_MODEL)")
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	threads := flag.Int("threads", 0, "CPU threads for the forward pass (0: rill's default, all cores)")
	maxSeqs := flag.Int("max-num-seqs", 0, "most requests in one step (0: rill's default)")
	flag.Parse()
	logger := log.New(os.Stderr, "rill-server: ", log.LstdFlags)
	if *model == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: rill-server --model PATH [--addr HOST:PORT] [--threads N] [--max-num-seqs N]")
		os.Exit(2)
	}

	cfg := map[string]any{"model": *model}
	if *threads > 0 {
		cfg["num_threads"] = *threads
	}
	if *maxSeqs > 0 {
		cfg["max_num_seqs"] = *maxSeqs
	}
	cfgJSON, _ := json.Marshal(cfg)
	eng, err := rill.NewEngine(string(cfgJSON))
	if err != nil {
		logger.Fatalf("loading %s: %v", *model, err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		_ = eng.Close()
		logger.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: newServer(eng, logger), ReadHeaderTimeout: 30 * time.Second}
	logger.Printf("rill %s, model %s, listening on http://%s", rill.Version(), *model, ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-sigs:
		logger.Printf("%v: shutting down", sig)
	case err := <-served:
		logger.Printf("serve: %v", err)
	}

	// Let requests in flight finish for a few seconds, then close the engine: that
	// cancels what still runs and ends those streams with their terminal events.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = srv.Shutdown(ctx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		logger.Printf("requests still running after 5 s: cancelling them")
	}
	if err := eng.Close(); err != nil {
		logger.Printf("closing the engine: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(ctx)
	cancel()
	_ = srv.Close()
}
