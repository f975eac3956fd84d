package rill

/*
#include "rill_helpers.h"
*/
import "C"

import (
	"regexp"
	"unsafe"
)

// Status codes: rill's RillStatus values, plus two that only the binding produces.
const (
	StatusOK                    = 0
	StatusNoEvent               = 1
	StatusNullArgument          = 2
	StatusInvalidUTF8           = 3
	StatusInvalidJSON           = 4
	StatusInvalidConfig         = 5
	StatusInvalidRequest        = 6
	StatusContextLengthExceeded = 7
	StatusIO                    = 8
	StatusModel                 = 9
	StatusUnknownRequest        = 10
	StatusEnginePoisoned        = 11
	StatusWrongThread           = 12
	StatusInternal              = 13
	StatusDevice                = 14

	// StatusClosed: the Engine was closed; no rill call was made.
	StatusClosed = -1
	// StatusABIMismatch: librill.so was built with another RILL_ABI_VERSION than rill.h.
	StatusABIMismatch = -2
)

// Error is a failed rill call: rill's status code and the message of rill_last_error(),
// which for a refused request names the field (see Field).
type Error struct {
	Status  int
	Message string
}

// Sentinel errors, one per status, for errors.Is: errors.Is(err, rill.ErrInvalidRequest)
// is true for any *Error with that status, whatever its message.
var (
	ErrNullArgument          = &Error{Status: StatusNullArgument}
	ErrInvalidUTF8           = &Error{Status: StatusInvalidUTF8}
	ErrInvalidJSON           = &Error{Status: StatusInvalidJSON}
	ErrInvalidConfig         = &Error{Status: StatusInvalidConfig}
	ErrInvalidRequest        = &Error{Status: StatusInvalidRequest}
	ErrContextLengthExceeded = &Error{Status: StatusContextLengthExceeded}
	ErrIO                    = &Error{Status: StatusIO}
	ErrModel                 = &Error{Status: StatusModel}
	ErrUnknownRequest        = &Error{Status: StatusUnknownRequest}
	ErrEnginePoisoned        = &Error{Status: StatusEnginePoisoned}
	ErrWrongThread           = &Error{Status: StatusWrongThread}
	ErrInternal              = &Error{Status: StatusInternal}
	ErrDevice                = &Error{Status: StatusDevice}
	ErrClosed                = &Error{Status: StatusClosed}
	ErrABIMismatch           = &Error{Status: StatusABIMismatch}
)

// StatusString names a status code (rill_status_str for rill's codes).
func StatusString(status int) string {
	switch status {
	case StatusClosed:
		return "engine closed"
	case StatusABIMismatch:
		return "ABI version mismatch"
	}
	return C.GoString(C.rill_status_str(C.int32_t(status)))
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "rill: " + StatusString(e.Status)
	}
	return "rill: " + StatusString(e.Status) + ": " + e.Message
}

// Is reports whether target is an *Error with the same status and, unless target's
// Message is empty (as in the sentinels), the same message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil || e == nil {
		return false
	}
	return t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

var fieldRe = regexp.MustCompile("request field `([^`]*)`")

// Field is the request field that rill's message names ("request field `X`: ..."), or ""
// when it names none.
func (e *Error) Field() string {
	if m := fieldRe.FindStringSubmatch(e.Message); m != nil {
		return m[1]
	}
	return ""
}

// statusError turns a status and the malloc'd copy of rill_last_error into an error (nil
// for OK) and frees the copy.
func statusError(st C.int32_t, msg *C.char) error {
	var text string
	if msg != nil {
		text = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	if st == C.RILL_STATUS_OK {
		return nil
	}
	return &Error{Status: int(st), Message: text}
}
