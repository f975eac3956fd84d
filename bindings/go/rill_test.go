package rill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The engine shared by most tests, on the default model.
var (
	eng       *Engine
	modelPath string
)

const parisRequest = `{"input": "Name the capital of France.", "temperature": 0, "max_output_tokens": 32}`
const longRequest = `{"input": "Tell me a very long story.", "ignore_eos": true}`

func engineConfig(model string) string {
	b, _ := json.Marshal(map[string]any{"model": model, "num_threads": 2})
	return string(b)
}

func TestMain(m *testing.M) {
	modelPath = os.Getenv("RILL_MODEL")
	if modelPath == "" {
		modelPath = filepath.Join("..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
	}
	var err error
	eng, err = NewEngine(engineConfig(modelPath))
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewEngine(%s): %v\n", modelPath, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := eng.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "Close: %v\n", err)
		code = 1
	}
	// Every stream has had its terminal event, so every cgo.Handle must be deleted.
	if n := liveHandles.Load(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cgo handles still live after all streams ended\n", n)
		code = 1
	}
	os.Exit(code)
}

// parsedEvent is what the tests read from an event's JSON.
type parsedEvent struct {
	Type           string `json:"type"`
	SequenceNumber *int   `json:"sequence_number"`
	Delta          string `json:"delta"`
	Response       *struct {
		Status            string `json:"status"`
		IncompleteDetails *struct {
			Reason string `json:"reason"`
		} `json:"incomplete_details"`
		Output []struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	} `json:"response"`
}

type result struct {
	events   []Event
	parsed   []parsedEvent
	text     string // the concatenated deltas
	final    string // the terminal event's response.output[0].content[0].text
	terminal parsedEvent
	times    []time.Time // when each event was received
}

func isTerminalType(t string) bool {
	return t == "response.completed" || t == "response.incomplete" || t == "response.failed"
}

// collect reads a stream until its channel closes and checks the invariants every
// stream must hold: created, in_progress first; sequence numbers 0..n-1; Type equal to
// the JSON's type; exactly one terminal event, last, with Last set.
func collect(t *testing.T, s *Stream, timeout time.Duration) *result {
	t.Helper()
	r := &result{}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				checkStream(t, r)
				return r
			}
			r.events = append(r.events, ev)
			r.times = append(r.times, time.Now())
		case <-deadline.C:
			t.Fatalf("request %d: stream did not close within %v (%d events)", s.ID(), timeout, len(r.events))
		}
	}
}

func checkStream(t *testing.T, r *result) {
	t.Helper()
	if len(r.events) < 3 {
		t.Fatalf("only %d events", len(r.events))
	}
	var text strings.Builder
	for i, ev := range r.events {
		var p parsedEvent
		if err := json.Unmarshal([]byte(ev.JSON), &p); err != nil {
			t.Fatalf("event %d is not JSON: %v: %s", i, err, ev.JSON)
		}
		r.parsed = append(r.parsed, p)
		if p.Type != ev.Type {
			t.Errorf("event %d: Type %q, JSON type %q", i, ev.Type, p.Type)
		}
		if p.SequenceNumber == nil || *p.SequenceNumber != i {
			t.Errorf("event %d: sequence_number %v", i, p.SequenceNumber)
		}
		if ev.Last != (i == len(r.events)-1) {
			t.Errorf("event %d of %d (%s): Last=%v", i, len(r.events), ev.Type, ev.Last)
		}
		if isTerminalType(ev.Type) != ev.Last {
			t.Errorf("event %d: type %s with Last=%v", i, ev.Type, ev.Last)
		}
		if ev.Type == "response.output_text.delta" {
			text.WriteString(p.Delta)
		}
	}
	if r.events[0].Type != "response.created" || r.events[1].Type != "response.in_progress" {
		t.Errorf("stream starts with %s, %s", r.events[0].Type, r.events[1].Type)
	}
	r.text = text.String()
	r.terminal = r.parsed[len(r.parsed)-1]
	if r.terminal.Response == nil {
		t.Fatalf("terminal event has no response: %s", r.events[len(r.events)-1].JSON)
	}
	if out := r.terminal.Response.Output; len(out) > 0 && len(out[0].Content) > 0 {
		r.final = out[0].Content[0].Text
	}
}

func countDeltas(r *result) int {
	n := 0
	for _, ev := range r.events {
		if ev.Type == "response.output_text.delta" {
			n++
		}
	}
	return n
}

func statsRequests(t *testing.T, e *Engine) map[string]float64 {
	t.Helper()
	st, err := e.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	reqs, ok := st["requests"].(map[string]any)
	if !ok {
		t.Fatalf("stats without requests: %v", st)
	}
	out := map[string]float64{}
	for k, v := range reqs {
		f, ok := v.(float64)
		if !ok {
			t.Fatalf("stats requests.%s = %v", k, v)
		}
		out[k] = f
	}
	return out
}

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Error("empty version")
	}
	if ABIVersion() != HeaderABIVersion {
		t.Errorf("library ABI %d, header %d", ABIVersion(), HeaderABIVersion)
	}
}

func TestStreamParis(t *testing.T) {
	s, err := eng.Submit(context.Background(), parisRequest)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() == 0 {
		t.Error("request id 0")
	}
	r := collect(t, s, 120*time.Second)
	if r.terminal.Type != "response.completed" || r.terminal.Response.Status != "completed" {
		t.Errorf("terminal %s status %s", r.terminal.Type, r.terminal.Response.Status)
	}
	if !strings.Contains(r.text, "Paris") {
		t.Errorf("text %q does not mention Paris", r.text)
	}
	if r.text != r.final {
		t.Errorf("deltas %q != final text %q", r.text, r.final)
	}
}

func TestMaxOutputTokens(t *testing.T) {
	s, err := eng.Submit(context.Background(), `{"input": "Count to one hundred.", "ignore_eos": true, "max_output_tokens": 5}`)
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, s, 120*time.Second)
	if r.terminal.Type != "response.incomplete" || r.terminal.Response.Status != "incomplete" ||
		r.terminal.Response.IncompleteDetails == nil || r.terminal.Response.IncompleteDetails.Reason != "max_output_tokens" {
		t.Errorf("terminal: %s", r.events[len(r.events)-1].JSON)
	}
}

func TestConcurrentRequests(t *testing.T) {
	const n = 4
	prompts := []string{
		"Name the capital of France.",
		"Name three colors.",
		"Say hello.",
		"What is two plus two?",
	}
	before := statsRequests(t, eng)
	results := make([]*result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := json.Marshal(map[string]any{
				"input": prompts[i], "temperature": 0, "ignore_eos": true, "max_output_tokens": 16,
			})
			s, err := eng.Submit(context.Background(), string(req))
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			results[i] = collect(t, s, 180*time.Second)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	lastFirstDelta, firstEnd := time.Time{}, time.Time{}
	for i, r := range results {
		if r.terminal.Type != "response.incomplete" || r.terminal.Response.Status != "incomplete" {
			t.Errorf("request %d: terminal %s status %s", i, r.terminal.Type, r.terminal.Response.Status)
		}
		if r.text != r.final || r.text == "" {
			t.Errorf("request %d: deltas %q, final %q", i, r.text, r.final)
		}
		for j, ev := range r.events {
			if ev.Type == "response.output_text.delta" {
				if r.times[j].After(lastFirstDelta) {
					lastFirstDelta = r.times[j]
				}
				break
			}
		}
		end := r.times[len(r.times)-1]
		if firstEnd.IsZero() || end.Before(firstEnd) {
			firstEnd = end
		}
	}
	if !strings.Contains(results[0].text, "Paris") {
		t.Errorf("batched answer %q does not mention Paris", results[0].text)
	}
	// The four generated at the same time: each had text before any of them ended.
	if !lastFirstDelta.Before(firstEnd) {
		t.Errorf("requests did not overlap: last first delta %v, first end %v", lastFirstDelta, firstEnd)
	}
	after := statsRequests(t, eng)
	if after["submitted"]-before["submitted"] != n || after["incomplete"]-before["incomplete"] != n {
		t.Errorf("stats before %v after %v", before, after)
	}
}

func waitDeltas(t *testing.T, s *Stream, n int, r *result) {
	t.Helper()
	timeout := time.After(120 * time.Second)
	for countDeltas(r) < n {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("stream closed after %d events", len(r.events))
			}
			r.events = append(r.events, ev)
			r.times = append(r.times, time.Now())
		case <-timeout:
			t.Fatalf("no %d deltas within 120 s", n)
		}
	}
}

func TestCancelByContext(t *testing.T) {
	before := statsRequests(t, eng)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := eng.Submit(ctx, longRequest)
	if err != nil {
		t.Fatal(err)
	}
	r := &result{}
	waitDeltas(t, s, 3, r)
	cancel()
	rest := collect(t, &Stream{id: s.id, ch: drainFrom(s, r)}, 120*time.Second)
	if rest.terminal.Type != "response.incomplete" || rest.terminal.Response.Status != "cancelled" {
		t.Errorf("cancelled stream ends with %s", rest.events[len(rest.events)-1].JSON)
	}
	if rest.text != rest.final {
		t.Errorf("deltas %q != final %q", rest.text, rest.final)
	}
	after := statsRequests(t, eng)
	if after["cancelled"]-before["cancelled"] != 1 {
		t.Errorf("cancelled before %v after %v", before["cancelled"], after["cancelled"])
	}
}

// drainFrom replays the events already read into r, then the rest of s, on a channel.
func drainFrom(s *Stream, r *result) chan Event {
	ch := make(chan Event, len(r.events))
	for _, ev := range r.events {
		ch <- ev
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		for len(ch) > 0 {
			out <- <-ch
		}
		for ev := range s.Events() {
			out <- ev
		}
	}()
	return out
}

func TestCancelByID(t *testing.T) {
	s, err := eng.Submit(context.Background(), longRequest)
	if err != nil {
		t.Fatal(err)
	}
	r := &result{}
	waitDeltas(t, s, 2, r)
	if err := s.Cancel(); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	rest := collect(t, &Stream{id: s.id, ch: drainFrom(s, r)}, 120*time.Second)
	if rest.terminal.Type != "response.incomplete" || rest.terminal.Response.Status != "cancelled" {
		t.Errorf("cancelled stream ends with %s", rest.events[len(rest.events)-1].JSON)
	}
	// Cancelling a finished request is a no-op; an id never issued is an error.
	if err := eng.Cancel(s.ID()); err != nil {
		t.Errorf("cancel finished request: %v", err)
	}
	err = eng.Cancel(987654321)
	if !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("cancel unknown id: %v", err)
	}
}

func TestSubmitWithDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := liveHandles.Load()
	s, err := eng.Submit(ctx, parisRequest)
	if s != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Submit with a cancelled context: %v, %v", s, err)
	}
	if liveHandles.Load() != before {
		t.Error("a refused submit leaked its handle")
	}
}

func TestBadRequests(t *testing.T) {
	cases := []struct {
		name, req string
		sentinel  *Error
		status    int
		field     string
	}{
		{"empty input", `{"input":""}`, ErrInvalidRequest, StatusInvalidRequest, "input"},
		{"not JSON", `not json`, ErrInvalidJSON, StatusInvalidJSON, ""},
		{"wrong type", `{"input":"x","max_output_tokens":"ten"}`, ErrInvalidRequest, StatusInvalidRequest, "max_output_tokens"},
		{"unknown field", `{"input":"x","colour":1}`, ErrInvalidRequest, StatusInvalidRequest, "colour"},
		{"other model", `{"input":"x","model":"gpt-nope"}`, ErrInvalidRequest, StatusInvalidRequest, "model"},
		{"invalid UTF-8", "{\"input\":\"\xc3\x28\"}", ErrInvalidUTF8, StatusInvalidUTF8, ""},
		{"NUL byte", "{\"input\":\"a\x00b\"}", ErrInvalidJSON, StatusInvalidJSON, ""},
		{"too long", `{"input":"` + strings.Repeat("word ", 9000) + `"}`, ErrContextLengthExceeded, StatusContextLengthExceeded, "input"},
	}
	handles := liveHandles.Load()
	for _, c := range cases {
		s, err := eng.Submit(context.Background(), c.req)
		if s != nil || err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, c.sentinel) {
			t.Errorf("%s: %v is not %v", c.name, err, c.sentinel)
		}
		if errors.Is(err, ErrInternal) {
			t.Errorf("%s: %v matches ErrInternal", c.name, err)
		}
		var re *Error
		if !errors.As(err, &re) {
			t.Errorf("%s: %T is not *Error", c.name, err)
			continue
		}
		if re.Status != c.status || re.Message == "" {
			t.Errorf("%s: status %d message %q", c.name, re.Status, re.Message)
		}
		if re.Field() != c.field {
			t.Errorf("%s: Field() %q, want %q (message %q)", c.name, re.Field(), c.field, re.Message)
		}
		if c.field != "" && !strings.Contains(re.Message, c.field) {
			t.Errorf("%s: message %q does not name %s", c.name, re.Message, c.field)
		}
		if !strings.Contains(err.Error(), re.Message) || !strings.HasPrefix(err.Error(), "rill: ") {
			t.Errorf("%s: Error() %q", c.name, err.Error())
		}
	}
	if liveHandles.Load() != handles {
		t.Errorf("refused submits leaked %d handles", liveHandles.Load()-handles)
	}
	// The engine still serves, and accepts its model's file stem and general.name.
	st, err := eng.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []any{st["model"], st["model_name"]} {
		req, _ := json.Marshal(map[string]any{"input": "Say hello.", "max_output_tokens": 4, "model": name})
		s, err := eng.Submit(context.Background(), string(req))
		if err != nil {
			t.Errorf("model %v: %v", name, err)
			continue
		}
		collect(t, s, 120*time.Second)
	}
}

func TestBadConfig(t *testing.T) {
	cases := []struct {
		name, cfg string
		sentinel  *Error
		mention   string
	}{
		{"not JSON", `{model`, ErrInvalidJSON, ""},
		{"missing file", `{"model":"/nonexistent/m.gguf"}`, ErrInvalidConfig, "/nonexistent/m.gguf"},
		{"unknown key", `{"model":` + mustJSON(modelPath) + `,"colour":1}`, ErrInvalidConfig, "colour"},
		{"wrong type", `{"model":` + mustJSON(modelPath) + `,"num_threads":"two"}`, ErrInvalidConfig, "num_threads"},
	}
	for _, c := range cases {
		e, err := NewEngine(c.cfg)
		if e != nil {
			_ = e.Close()
		}
		if e != nil || !errors.Is(err, c.sentinel) {
			t.Errorf("%s: %v, %v", c.name, e, err)
			continue
		}
		var re *Error
		if !errors.As(err, &re) || !strings.Contains(re.Message, c.mention) || re.Message == "" {
			t.Errorf("%s: %v does not mention %q", c.name, err, c.mention)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Status: StatusInvalidRequest, Message: "request field `input`: must not be empty"})
	if !errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrInvalidJSON) || errors.Is(err, ErrClosed) {
		t.Error("errors.Is by status")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), ErrInvalidRequest) {
		t.Error("errors.Is through wrapping")
	}
	if !errors.Is(err, &Error{Status: StatusInvalidRequest, Message: "request field `input`: must not be empty"}) ||
		errors.Is(err, &Error{Status: StatusInvalidRequest, Message: "other"}) {
		t.Error("errors.Is with a message")
	}
	if got := err.Error(); got != "rill: invalid request: request field `input`: must not be empty" {
		t.Errorf("Error() = %q", got)
	}
	if ErrClosed.Error() != "rill: engine closed" {
		t.Errorf("ErrClosed.Error() = %q", ErrClosed.Error())
	}
	if (&Error{Message: "no field here"}).Field() != "" {
		t.Error("Field of a message without a field")
	}
}

func TestEventType(t *testing.T) {
	cases := map[string]string{
		`{"type":"response.created","sequence_number":0}`: "response.created",
		`{"sequence_number":0,"type":"response.done"}`:    "response.done",
		`{"type":"a\"b","x":1}`:                           `a"b`,
		`not json`:                                        "",
	}
	for in, want := range cases {
		if got := eventType(in); got != want {
			t.Errorf("eventType(%s) = %q, want %q", in, got, want)
		}
	}
}

// Close while requests run: one stream being read, one never read until after Close,
// and goroutines calling Submit, Cancel and Stats throughout. Close waits for the calls
// in progress, destroys the engine, and every stream ends with its terminal event.
func TestCloseWhileRunning(t *testing.T) {
	e, err := NewEngine(engineConfig(modelPath))
	if err != nil {
		t.Fatal(err)
	}
	read, err := e.Submit(context.Background(), longRequest)
	if err != nil {
		t.Fatal(err)
	}
	unread, err := e.Submit(context.Background(), `{"input": "Count to ten thousand.", "ignore_eos": true}`)
	if err != nil {
		t.Fatal(err)
	}
	// A finished request, for the Cancel hammer (cancelling it is a no-op returning nil).
	done, err := e.Submit(context.Background(), `{"input":"Hi","max_output_tokens":2}`)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, done, 60*time.Second)
	r := &result{}
	waitDeltas(t, read, 3, r)

	// Hammer the engine from other goroutines until they see ErrClosed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var extra []*Stream
	stop := make(chan struct{})
	hammer := func(name string, call func() error) {
		defer wg.Done()
		for {
			err := call()
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("%s during Close: %v", name, err)
				return
			}
			select {
			case <-stop:
				t.Errorf("%s never saw ErrClosed", name)
				return
			default:
			}
			time.Sleep(time.Millisecond)
		}
	}
	wg.Add(3)
	go hammer("Stats", func() error { _, err := e.Stats(); return err })
	go hammer("Cancel", func() error { return e.Cancel(done.ID()) })
	go hammer("Submit", func() error {
		s, err := e.Submit(context.Background(), `{"input":"Hi","max_output_tokens":64}`)
		if err == nil {
			mu.Lock()
			extra = append(extra, s)
			mu.Unlock()
		}
		return err
	})

	time.Sleep(50 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Close hung")
	}
	// Terminal events were delivered before Close returned: the handles are gone.
	select {
	case <-read.ended:
	default:
		t.Error("read stream had no terminal event when Close returned")
	}
	select {
	case <-unread.ended:
	default:
		t.Error("unread stream had no terminal event when Close returned")
	}

	rest := collect(t, &Stream{id: read.id, ch: drainFrom(read, r)}, 30*time.Second)
	if rest.terminal.Type != "response.incomplete" || rest.terminal.Response.Status != "cancelled" {
		t.Errorf("read stream ends with %s", rest.events[len(rest.events)-1].JSON)
	}
	u := collect(t, unread, 30*time.Second)
	if u.terminal.Type != "response.incomplete" || u.terminal.Response.Status != "cancelled" {
		t.Errorf("unread stream ends with %s", u.events[len(u.events)-1].JSON)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	for _, s := range extra {
		collect(t, s, 30*time.Second)
	}
	t.Logf("%d requests submitted by the hammer", len(extra))
	mu.Unlock()

	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := e.Submit(context.Background(), parisRequest); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
	if _, err := e.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
	if err := e.Cancel(read.ID()); !errors.Is(err, ErrClosed) {
		t.Errorf("Cancel after Close: %v", err)
	}
}

// A stream whose context is cancelled while Close runs still ends once.
func TestCloseWithContextCancel(t *testing.T) {
	e, err := NewEngine(engineConfig(modelPath))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := e.Submit(ctx, longRequest)
	if err != nil {
		t.Fatal(err)
	}
	r := &result{}
	waitDeltas(t, s, 1, r)
	go cancel()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	rest := collect(t, &Stream{id: s.id, ch: drainFrom(s, r)}, 30*time.Second)
	if rest.terminal.Response.Status != "cancelled" {
		t.Errorf("ends with %s", rest.events[len(rest.events)-1].JSON)
	}
}

func TestCloseIdle(t *testing.T) {
	e, err := NewEngine(engineConfig(modelPath))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := e.Close(); err != nil {
			t.Errorf("Close %d: %v", i, err)
		}
	}
}

// withoutIDs decodes a Response and blanks what differs between two runs of one request.
func withoutIDs(t *testing.T, js string) map[string]any {
	t.Helper()
	var r map[string]any
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, js)
	}
	r["id"], r["created_at"] = "", 0
	items, _ := r["output"].([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			m["id"] = ""
		}
	}
	return r
}

func TestGenerateEqualsStreamedTerminalResponse(t *testing.T) {
	const req = `{"input": "What is the capital of Italy? Answer in one sentence.", "temperature": 0, "max_output_tokens": 48}`
	ctx := context.Background()
	// Warm the prefix cache so that both runs below report the same cached tokens.
	if _, err := eng.Generate(ctx, req); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	s, err := eng.Submit(ctx, req)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	r := collect(t, s, 2*time.Minute)
	var terminal struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal([]byte(r.events[len(r.events)-1].JSON), &terminal); err != nil {
		t.Fatal(err)
	}
	got, err := eng.Generate(ctx, req)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	g, want := withoutIDs(t, got), withoutIDs(t, string(terminal.Response))
	if g["status"] != "completed" {
		t.Errorf("status %v", g["status"])
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("Generate's Response differs from the streamed one:\n got  %s\n want %s", gb, wb)
	}
}

func TestGenerateRefusedAndCancelled(t *testing.T) {
	handles := liveHandles.Load()
	_, err := eng.Generate(context.Background(), `{"input":"x","temperature":"hot"}`)
	var re *Error
	if !errors.As(err, &re) || re.Status != StatusInvalidRequest || !strings.Contains(re.Message, "temperature") {
		t.Fatalf("refused Generate: %v", err)
	}
	if n := liveHandles.Load(); n != handles {
		t.Errorf("a refused Generate left %d handles", n-handles)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := eng.Generate(ctx, longRequest)
	if err != nil {
		t.Fatalf("Generate with a deadline: %v", err)
	}
	if r := withoutIDs(t, got); r["status"] != "cancelled" {
		t.Errorf("status %v after the context ended", r["status"])
	}
}
