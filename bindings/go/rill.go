// Package rill is the Go binding of rill, an embeddable LLM inference engine
// (include/rill.h). An Engine loads a GGUF model; Submit takes an OpenAI Responses API
// request body as JSON and returns a Stream whose channel carries the Responses
// streaming events as JSON, ending with exactly one terminal event; Generate returns
// just the final Response JSON (for `stream: false`).
//
// Events come through rill's callback: rill calls an exported Go function on its
// delivery thread with a runtime/cgo.Handle of the Stream as user_data; the function
// copies the event into the Stream's unbounded queue (so it never blocks rill) and
// deletes the handle on the terminal (is_last) event. A goroutine per Stream moves the
// queue into the channel, which closes after the terminal event.
package rill

/*
#cgo LDFLAGS: -lrill
#include "rill_helpers.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// HeaderABIVersion is RILL_ABI_VERSION of the rill.h this package was compiled against.
const HeaderABIVersion = uint32(C.RILL_ABI_VERSION)

// Version is the library version, e.g. "0.1.0".
func Version() string { return C.GoString(C.rill_version()) }

// ABIVersion is the ABI version librill was built with.
func ABIVersion() uint32 { return uint32(C.rill_abi_version()) }

// Engine is a loaded model and its threads. All methods are safe for concurrent use.
type Engine struct {
	// mu guards ptr: every rill call on the engine holds it for reading, Close holds it
	// for writing, so no goroutine is inside a rill call on the engine when destroy runs.
	mu  sync.RWMutex
	ptr *C.RillEngine
}

// NewEngine creates an engine from rill's JSON config, e.g.
// {"model": "models/SmolLM2-135M-Instruct.Q4_1.gguf", "num_threads": 2}, and loads the
// model. Call Close when done.
func NewEngine(configJSON string) (*Engine, error) {
	if ABIVersion() != HeaderABIVersion {
		return nil, &Error{Status: StatusABIMismatch, Message: "librill ABI version does not match rill.h"}
	}
	if strings.IndexByte(configJSON, 0) >= 0 {
		return nil, &Error{Status: StatusInvalidJSON, Message: "config contains a NUL byte"}
	}
	ccfg := C.CString(configJSON)
	defer C.free(unsafe.Pointer(ccfg))
	var ptr *C.RillEngine
	var cerr *C.char
	if err := statusError(C.rillgo_create(ccfg, &ptr, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Engine{ptr: ptr}, nil
}

// Event is one Responses streaming event.
type Event struct {
	JSON string // the event object, as rill produced it
	Type string // its "type", e.g. "response.output_text.delta"
	Last bool   // true on the terminal event (completed, incomplete or failed)
}

// Stream is one submitted request's events.
type Stream struct {
	id     uint64
	engine *Engine
	ch     chan Event
	ended  chan struct{} // closed when rill delivered the terminal event

	mu    sync.Mutex
	cond  *sync.Cond
	queue []Event
}

// ID is rill's request id.
func (s *Stream) ID() uint64 { return s.id }

// Events carries the request's events in order; it closes after the terminal event
// (Event.Last). Read it until it closes: the events wait in memory until then.
func (s *Stream) Events() <-chan Event { return s.ch }

// Cancel cancels the request (see Engine.Cancel); the stream still ends with its
// terminal event.
func (s *Stream) Cancel() error { return s.engine.Cancel(s.id) }

// liveHandles counts the cgo handles of streams whose terminal event has not come.
var liveHandles atomic.Int64

// Submit submits a Responses API request body. A refused request returns an *Error
// (the message names the field) and queues nothing. When ctx is done before the
// terminal event, the request is cancelled in rill; the stream still ends with its
// terminal event (response.incomplete, status "cancelled") and the channel then closes.
func (e *Engine) Submit(ctx context.Context, requestJSON string) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if strings.IndexByte(requestJSON, 0) >= 0 {
		return nil, &Error{Status: StatusInvalidJSON, Message: "request contains a NUL byte"}
	}
	s := &Stream{engine: e, ch: make(chan Event, 64), ended: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	creq := C.CString(requestJSON)
	defer C.free(unsafe.Pointer(creq))

	h := cgo.NewHandle(s)
	liveHandles.Add(1)
	var id C.uint64_t
	var cerr *C.char
	e.mu.RLock()
	if e.ptr == nil {
		e.mu.RUnlock()
		h.Delete()
		liveHandles.Add(-1)
		return nil, ErrClosed
	}
	st := C.rillgo_submit(e.ptr, creq, C.uintptr_t(h), &id, &cerr)
	e.mu.RUnlock()
	if err := statusError(st, cerr); err != nil {
		// A refused request produces no events, so the callback never sees this handle.
		h.Delete()
		liveHandles.Add(-1)
		return nil, err
	}
	s.id = uint64(id)
	go s.forward()
	if done := ctx.Done(); done != nil {
		go func() {
			select {
			case <-done:
				_ = e.Cancel(uint64(id)) // ErrClosed after Close: destroy cancelled it
			case <-s.ended:
			}
		}()
	}
	return s, nil
}

// Generate runs a request to its end and returns its final Response object as JSON: the
// `response` member of its terminal event, byte for byte (what an OpenAI server answers
// for `stream: false`). A refused request returns an *Error, as Submit does. A response
// that ends incomplete, cancelled or failed is not an error: its "status" tells. When ctx
// is done first, the request is cancelled in rill and its Response (status "cancelled")
// is returned.
//
// Generate is Submit plus Stream.Response, not rill_engine_generate: that C call returns
// no request id, so ctx could not cancel it, and a goroutine blocked in it would hold the
// engine's lock and stall Close until the request ended on its own.
func (e *Engine) Generate(ctx context.Context, requestJSON string) (string, error) {
	s, err := e.Submit(ctx, requestJSON)
	if err != nil {
		return "", err
	}
	return s.Response()
}

// Response reads the stream to its end (do not read Events concurrently) and returns the
// `response` object of its terminal event as JSON, whatever its status.
func (s *Stream) Response() (string, error) {
	var last Event
	for ev := range s.ch {
		if ev.Last {
			last = ev
		}
	}
	var terminal struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal([]byte(last.JSON), &terminal); err != nil || len(terminal.Response) == 0 {
		return "", &Error{Status: StatusInternal, Message: "the terminal event has no response: " + last.JSON}
	}
	return string(terminal.Response), nil
}

//export rillgoOnEvent
func rillgoOnEvent(handle C.uintptr_t, requestID C.uint64_t, eventJSON *C.char, eventLen C.size_t, isLast C.bool) {
	h := cgo.Handle(handle)
	s := h.Value().(*Stream)
	ev := Event{JSON: C.GoStringN(eventJSON, C.int(eventLen)), Last: bool(isLast)}
	ev.Type = eventType(ev.JSON)
	if ev.Last {
		// rill is done with user_data; delete the handle before the event can reach
		// the reader, so a reader that saw the channel close sees no live handle.
		h.Delete()
		liveHandles.Add(-1)
	}
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	s.cond.Signal()
	if ev.Last {
		close(s.ended)
	}
}

// forward moves queued events into the channel and closes it after the terminal event.
func (s *Stream) forward() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			s.cond.Wait()
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, ev := range batch {
			s.ch <- ev
			if ev.Last {
				return
			}
		}
	}
}

// eventType reads "type" from an event; rill's events start with {"type":"...".
func eventType(js string) string {
	const prefix = `{"type":"`
	if strings.HasPrefix(js, prefix) {
		rest := js[len(prefix):]
		if i := strings.IndexByte(rest, '"'); i >= 0 && !strings.Contains(rest[:i], `\`) {
			return rest[:i]
		}
	}
	var v struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(js), &v)
	return v.Type
}

// Cancel cancels a request by id, from any goroutine. Its stream still ends with a
// terminal event. Cancelling a finished request is a no-op; an id this engine never
// issued is ErrUnknownRequest.
func (e *Engine) Cancel(id uint64) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var cerr *C.char
	return statusError(C.rillgo_cancel(e.ptr, C.uint64_t(id), &cerr), cerr)
}

// StatsJSON is rill's stats object as JSON: model, device, limits, request and token
// counts, KV cache bytes.
func (e *Engine) StatsJSON() (string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return "", ErrClosed
	}
	var out, cerr *C.char
	if err := statusError(C.rillgo_stats(e.ptr, &out, &cerr), cerr); err != nil {
		return "", err
	}
	defer C.rill_string_free(out)
	return C.GoString(out), nil
}

// Stats is rill's stats object, decoded (numbers are float64).
func (e *Engine) Stats() (map[string]any, error) {
	js, err := e.StatsJSON()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		return nil, &Error{Status: StatusInternal, Message: "stats: " + err.Error()}
	}
	return m, nil
}

// Close destroys the engine: requests still running are cancelled and their terminal
// events delivered to their streams before Close returns; rill's threads are joined.
// It waits for rill calls in progress on other goroutines and makes later calls return
// ErrClosed. Calling it again is a no-op returning nil.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr == nil {
		return nil
	}
	ptr := e.ptr
	e.ptr = nil
	var cerr *C.char
	return statusError(C.rillgo_destroy(ptr, &cerr), cerr)
}
