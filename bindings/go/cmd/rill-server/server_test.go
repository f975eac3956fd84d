package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rill "github.com/rill-engine/rill/bindings/go"
)

func TestWriteSSE(t *testing.T) {
	var buf bytes.Buffer
	writeSSE(&buf, "response.created", `{"a":1}`)
	if got := buf.String(); got != "event: response.created\ndata: {\"a\":1}\n\n" {
		t.Errorf("%q", got)
	}
	buf.Reset()
	writeSSE(&buf, "x", "{\n\"a\":1}")
	if got := buf.String(); got != "event: x\ndata: {\ndata: \"a\":1}\n\n" {
		t.Errorf("multi-line data: %q", got)
	}
}

func TestWriteSubmitError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		typ    string
		param  any
	}{
		{&rill.Error{Status: rill.StatusInvalidRequest, Message: "request field `input`: must not be empty"}, 400, "invalid_request_error", "input"},
		{&rill.Error{Status: rill.StatusInvalidJSON, Message: "request is not valid JSON"}, 400, "invalid_request_error", nil},
		{&rill.Error{Status: rill.StatusContextLengthExceeded, Message: "request field `input`: too long"}, 400, "invalid_request_error", "input"},
		{rill.ErrClosed, 503, "server_error", nil},
		{&rill.Error{Status: rill.StatusInternal, Message: "bug"}, 500, "server_error", nil},
		{errors.New("other"), 500, "server_error", nil},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		writeSubmitError(rec, c.err)
		var body map[string]map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: %v", c.err, err)
		}
		e := body["error"]
		if rec.Code != c.status || e["type"] != c.typ || e["param"] != c.param || e["code"] != nil || e["message"] == "" {
			t.Errorf("%v: %d %v", c.err, rec.Code, body)
		}
		if _, ok := e["code"]; !ok {
			t.Errorf("%v: no code key", c.err)
		}
	}
}

// End to end over HTTP on the real model (run under -race by test.sh).
func TestServerEndToEnd(t *testing.T) {
	model := os.Getenv("RILL_MODEL")
	if model == "" {
		model = filepath.Join("..", "..", "..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
	}
	cfg, _ := json.Marshal(map[string]any{"model": model, "num_threads": 2})
	eng, err := rill.NewEngine(string(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ts := httptest.NewServer(newServer(eng, log.New(io.Discard, "", 0)))
	defer ts.Close()
	post := func(ctx context.Context, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/responses", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// Streaming: one SSE per event, named by its type, ending with the terminal event.
	resp := post(context.Background(), `{"input":"Name the capital of France.","temperature":0,"max_output_tokens":32,"stream":true}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	var types []string
	var text strings.Builder
	var last map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var data map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatal(err)
			}
			if data["type"] != event {
				t.Errorf("event %q carries type %v", event, data["type"])
			}
			types = append(types, event)
			if d, ok := data["delta"].(string); ok {
				text.WriteString(d)
			}
			last = data
		}
	}
	resp.Body.Close()
	if len(types) < 3 || types[0] != "response.created" || types[len(types)-1] != "response.completed" {
		t.Errorf("types %v", types)
	}
	if !strings.Contains(text.String(), "Paris") {
		t.Errorf("text %q", text.String())
	}
	if r, _ := last["response"].(map[string]any); r == nil || r["status"] != "completed" {
		t.Errorf("last %v", last)
	}

	// Non-streaming: the terminal event's response object.
	resp = post(context.Background(), `{"input":"Name the capital of France.","temperature":0,"max_output_tokens":32}`)
	var final map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&final)
	resp.Body.Close()
	if resp.StatusCode != 200 || final["object"] != "response" || final["status"] != "completed" {
		t.Errorf("non-streaming: %d %v", resp.StatusCode, final)
	}

	// Bad request.
	resp = post(context.Background(), `{"input":"x","max_output_tokens":"ten"}`)
	var bad map[string]map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&bad)
	resp.Body.Close()
	if resp.StatusCode != 400 || bad["error"]["param"] != "max_output_tokens" || bad["error"]["type"] != "invalid_request_error" {
		t.Errorf("bad request: %d %v", resp.StatusCode, bad)
	}

	// A client that leaves mid-stream cancels the request in rill.
	cancelled := func() float64 {
		st, err := eng.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st["requests"].(map[string]any)["cancelled"].(float64)
	}
	before := cancelled()
	ctx, cancel := context.WithCancel(context.Background())
	resp = post(ctx, `{"input":"Tell me a very long story.","ignore_eos":true,"stream":true}`)
	rd := bufio.NewReader(resp.Body)
	for deltas := 0; deltas < 3; {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: response.output_text.delta") {
			deltas++
		}
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for cancelled() == before {
		if time.Now().After(deadline) {
			t.Fatal("the request was not cancelled after the client left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
