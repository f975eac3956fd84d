package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"

	rill "github.com/rill-engine/rill/bindings/go"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 16 << 20

// server serves the OpenAI Responses API from one rill engine.
type server struct {
	eng *rill.Engine
	log *log.Logger
}

func newServer(eng *rill.Engine, logger *log.Logger) http.Handler {
	s := &server{eng: eng, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/responses", s.responses)
	mux.HandleFunc("/stats", s.stats)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "invalid_request_error",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), nil)
	})
	return mux
}

// apiError is OpenAI's error body.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, typ, message string, param *string) {
	var body apiError
	body.Error.Message = message
	body.Error.Type = typ
	body.Error.Param = param
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, b)
}

func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

// writeSubmitError answers a request that rill refused (or could not take).
func writeSubmitError(w http.ResponseWriter, err error) {
	var re *rill.Error
	if !errors.As(err, &re) {
		writeError(w, http.StatusInternalServerError, "server_error", err.Error(), nil)
		return
	}
	var param *string
	if f := re.Field(); f != "" {
		param = &f
	}
	switch re.Status {
	case rill.StatusInvalidJSON, rill.StatusInvalidUTF8, rill.StatusInvalidRequest, rill.StatusContextLengthExceeded:
		writeError(w, http.StatusBadRequest, "invalid_request_error", re.Message, param)
	case rill.StatusClosed, rill.StatusEnginePoisoned:
		writeError(w, http.StatusServiceUnavailable, "server_error", re.Error(), nil)
	default:
		writeError(w, http.StatusInternalServerError, "server_error", re.Error(), nil)
	}
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "use GET /stats", nil)
		return
	}
	js, err := s.eng.StatsJSON()
	if err != nil {
		writeSubmitError(w, err)
		return
	}
	writeRawJSON(w, http.StatusOK, []byte(js))
}

func (s *server) responses(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error",
			fmt.Sprintf("Invalid method for URL (%s %s)", r.Method, r.URL.Path), nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error",
				fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes), nil)
		} else {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "reading the request body: "+err.Error(), nil)
		}
		return
	}
	// rill validates the whole body, `stream` included; when the client goes away the
	// request context ends and Submit cancels the request in rill.
	stream, err := s.eng.Submit(r.Context(), string(body))
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left before the request was submitted
		}
		writeSubmitError(w, err)
		return
	}
	var flags struct {
		Stream bool `json:"stream"`
	}
	_ = json.Unmarshal(body, &flags) // rill accepted it: valid JSON, `stream` a boolean if present
	w.Header().Set("x-request-id", fmt.Sprintf("req_%d", stream.ID()))
	if flags.Stream {
		s.streamEvents(w, stream)
	} else {
		s.finalResponse(w, r, stream)
	}
}

// streamEvents writes every event as a Server-Sent Event. After a failed write (the
// client left) it cancels the request and drains the stream to its terminal event.
func (s *server) streamEvents(w http.ResponseWriter, stream *rill.Stream) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	broken := false
	var buf bytes.Buffer
	for ev := range stream.Events() {
		if broken {
			continue
		}
		buf.Reset()
		writeSSE(&buf, ev.Type, ev.JSON)
		if _, err := w.Write(buf.Bytes()); err != nil {
			broken = true
			_ = stream.Cancel()
			continue
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// writeSSE formats one event: "event: TYPE\ndata: JSON\n\n" (a data line per line).
func writeSSE(buf *bytes.Buffer, typ, data string) {
	buf.WriteString("event: ")
	buf.WriteString(typ)
	buf.WriteByte('\n')
	for _, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		buf.WriteString("data: ")
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
}

// finalResponse waits for the terminal event and answers with its `response` object
// (Stream.Response, the other half of Engine.Generate: the server submits itself to learn
// the request id for x-request-id before it knows which way to answer).
func (s *server) finalResponse(w http.ResponseWriter, r *http.Request, stream *rill.Stream) {
	response, err := stream.Response()
	if r.Context().Err() != nil {
		return // the client left; the request was cancelled in rill
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "rill's terminal event has no response", nil)
		return
	}
	var ended struct {
		Status string `json:"status"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(response), &ended)
	if ended.Status == "failed" {
		msg := "The server had an error while processing your request."
		if ended.Error != nil && ended.Error.Message != "" {
			msg = ended.Error.Message
		}
		s.log.Printf("request %d failed: %s", stream.ID(), msg)
		writeError(w, http.StatusInternalServerError, "server_error", msg, nil)
		return
	}
	writeRawJSON(w, http.StatusOK, []byte(response))
}
