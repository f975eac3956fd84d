// rill.hpp: header-only C++17 binding of rill's C API (include/rill.h).
//
// - rill::Engine owns one RillEngine (move-only; the destructor destroys it).
// - Every failing call throws rill::Error, which carries the status (rill::Status, the
//   C RillStatus as an enum class) and the message of rill_last_error().
// - Engine::submit(request_json, callback) delivers a request's events to a
//   std::function on rill's delivery thread; Engine::stream(request_json) returns a
//   rill::Stream, an input range of rill::Event backed by rill_engine_poll_request.
// - Engine::generate(request_json) runs a request to its end and returns the final
//   Response JSON (rill_engine_generate), for `stream: false`.
// - Engine::cancel(request) and Engine::stats().
//
// This file wraps include/rill.h only; see bindings/cpp/README.md.
#ifndef RILL_HPP
#define RILL_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "rill.h"

namespace rill {

// The C RillStatus codes, one for one.
enum class Status : std::int32_t {
  Ok = RILL_STATUS_OK,
  NoEvent = RILL_STATUS_NO_EVENT,
  NullArgument = RILL_STATUS_NULL_ARGUMENT,
  InvalidUtf8 = RILL_STATUS_INVALID_UTF8,
  InvalidJson = RILL_STATUS_INVALID_JSON,
  InvalidConfig = RILL_STATUS_INVALID_CONFIG,
  InvalidRequest = RILL_STATUS_INVALID_REQUEST,
  ContextLengthExceeded = RILL_STATUS_CONTEXT_LENGTH_EXCEEDED,
  Io = RILL_STATUS_IO,
  Model = RILL_STATUS_MODEL,
  UnknownRequest = RILL_STATUS_UNKNOWN_REQUEST,
  EnginePoisoned = RILL_STATUS_ENGINE_POISONED,
  WrongThread = RILL_STATUS_WRONG_THREAD,
  Internal = RILL_STATUS_INTERNAL,
  Device = RILL_STATUS_DEVICE,
};

// rill's static description of a status ("invalid request", ...).
inline const char* to_string(Status status) noexcept {
  return rill_status_str(static_cast<std::int32_t>(status));
}

// A failed rill call: its status and rill_last_error() as it was right after the call.
// what() is "<description of the status>: <message>".
class Error : public std::runtime_error {
 public:
  Error(Status status, std::string message)
      : std::runtime_error(std::string(to_string(status)) + (message.empty() ? "" : ": ") + message),
        status_(status),
        message_(std::move(message)) {}

  Status status() const noexcept { return status_; }
  // The rill_last_error() text alone (may be empty).
  const std::string& message() const noexcept { return message_; }

 private:
  Status status_;
  std::string message_;
};

// A request id, as issued by rill (nonzero).
struct Request {
  std::uint64_t id = 0;

  friend bool operator==(Request a, Request b) noexcept { return a.id == b.id; }
  friend bool operator!=(Request a, Request b) noexcept { return a.id != b.id; }
  friend bool operator<(Request a, Request b) noexcept { return a.id < b.id; }
};

// One streamed event: the Responses event JSON, and whether it is the terminal one
// (response.completed, response.incomplete or response.failed).
struct Event {
  std::string json;
  bool last = false;
};

// The library's version ("0.1.0") and ABI version (equal to RILL_ABI_VERSION when the
// header and library match).
inline std::string_view version() noexcept { return rill_version(); }
inline std::uint32_t abi_version() noexcept { return rill_abi_version(); }

namespace detail {

[[noreturn]] inline void throw_status(RillStatus status) {
  const char* msg = rill_last_error();  // read first: it is this thread's, until the next failure
  throw Error(static_cast<Status>(status), msg ? msg : "");
}

inline void check(RillStatus status) {
  if (status != RILL_STATUS_OK) throw_status(status);
}

// Copies a string returned by rill and frees it with rill_string_free.
inline std::string take_string(char* s) {
  std::unique_ptr<char, void (*)(char*)> owned(s, rill_string_free);
  return std::string(s);
}

// A timeout for rill's int32 millisecond arguments: negative waits forever.
inline std::int32_t to_timeout_ms(std::chrono::milliseconds timeout) noexcept {
  constexpr auto max = std::numeric_limits<std::int32_t>::max();
  if (timeout.count() < 0) return -1;
  return timeout.count() > max ? max : static_cast<std::int32_t>(timeout.count());
}

}  // namespace detail

// The events of one request submitted without a callback, in order, ending with its
// terminal event. An input range: `for (const rill::Event& e : engine.stream(body))`.
// Iterating blocks in rill_engine_poll_request until the next event; the range ends after
// the event whose `last` is true.
//
// A Stream is move-only and must be destroyed before the Engine that made it. Destroying
// (or moving over) a Stream whose terminal event was not taken cancels the request and
// discards its remaining events, so an early `break` leaves nothing queued in rill.
class Stream {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Event;
    using difference_type = std::ptrdiff_t;
    using pointer = const Event*;
    using reference = const Event&;

    iterator() = default;  // the end iterator

    reference operator*() const { return *stream_->current_; }
    pointer operator->() const { return &*stream_->current_; }

    // Fetches the next event (blocking); after the terminal event, becomes end().
    iterator& operator++() {
      if (stream_->current_->last) {
        stream_->current_.reset();
      } else {
        stream_->current_ = stream_->next();
      }
      if (!stream_->current_) stream_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }

    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.stream_ == b.stream_;
    }
    friend bool operator!=(const iterator& a, const iterator& b) noexcept { return !(a == b); }

   private:
    friend class Stream;
    explicit iterator(Stream* stream) : stream_(stream) {}
    Stream* stream_ = nullptr;
  };

  Stream(Stream&& other) noexcept
      : engine_(std::exchange(other.engine_, nullptr)),
        request_(other.request_),
        finished_(other.finished_),
        current_(std::move(other.current_)) {
    other.current_.reset();
  }
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      abandon();
      engine_ = std::exchange(other.engine_, nullptr);
      request_ = other.request_;
      finished_ = other.finished_;
      current_ = std::move(other.current_);
      other.current_.reset();
    }
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { abandon(); }

  // The request's id (for Engine::cancel from another thread).
  Request id() const noexcept { return request_; }
  // Whether the terminal event has been taken.
  bool done() const noexcept { return finished_ || engine_ == nullptr; }

  // Starts (or resumes) iteration at the current event, fetching it if needed.
  iterator begin() {
    if (!current_) current_ = next();
    return current_ ? iterator(this) : iterator();
  }
  iterator end() noexcept { return iterator(); }

  // The next event, waiting up to `timeout` (negative: forever). std::nullopt when the
  // wait timed out or the stream is done() (the terminal event was already taken).
  // Throws Error if rill refuses the poll. Do not mix with an ongoing iteration.
  std::optional<Event> next(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
    if (done()) return std::nullopt;
    char* json = nullptr;
    bool last = false;
    RillStatus status = rill_engine_poll_request(engine_, request_.id,
                                                 detail::to_timeout_ms(timeout), &json, &last);
    if (status == RILL_STATUS_NO_EVENT) return std::nullopt;
    detail::check(status);
    finished_ = last;
    return Event{detail::take_string(json), last};
  }

 private:
  friend class Engine;
  Stream(RillEngine* engine, Request request) noexcept : engine_(engine), request_(request) {}

  // Cancels an unfinished request and drains its events (rill ends every cancelled
  // stream with a terminal event, so this returns within about one engine step).
  void abandon() noexcept {
    if (done()) return;
    rill_engine_cancel(engine_, request_.id);
    bool last = false;
    while (!last) {
      char* json = nullptr;
      if (rill_engine_poll_request(engine_, request_.id, -1, &json, &last) != RILL_STATUS_OK) break;
      rill_string_free(json);
    }
    finished_ = true;
  }

  RillEngine* engine_ = nullptr;
  Request request_;
  bool finished_ = false;
  std::optional<Event> current_;  // the event the iterator points at
};

// An engine: a loaded model and its threads (rill_engine_create / rill_engine_destroy).
// Move-only. Every member but close() and the destructor may be called from any thread
// at once, and from inside an event callback (but do not wait there on a Stream, by
// iterating it or destroying it unfinished: rill's delivery thread, which runs callbacks,
// is the one that produces its events).
class Engine {
 public:
  // Receives one event: the JSON (borrowed for the call; copy it to keep it) and whether
  // it is the terminal event. Runs on rill's delivery thread; must return promptly and
  // must not throw (an exception escaping it calls std::terminate, as from a std::thread).
  using Callback = std::function<void(std::string_view event_json, bool is_last)>;

  // Creates an engine from a JSON config ({"model": "path.gguf", ...}; see the README).
  explicit Engine(const std::string& config_json) {
    detail::check(rill_engine_create(config_json.c_str(), &engine_));
  }

  Engine(Engine&& other) noexcept : engine_(std::exchange(other.engine_, nullptr)) {}
  Engine& operator=(Engine&& other) noexcept {
    if (this != &other) {
      destroy_quietly();
      engine_ = std::exchange(other.engine_, nullptr);
    }
    return *this;
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // rill_engine_destroy: cancels what is in flight, runs the callbacks' terminal events
  // (freeing their std::functions) and joins rill's threads. Errors cannot be reported
  // from here; call close() to see them.
  ~Engine() { destroy_quietly(); }

  // Destroys the engine now and throws Error if rill refuses (WrongThread: called from
  // inside an event callback; the engine then stays alive and usable). No-op when empty.
  void close() {
    if (!engine_) return;
    detail::check(rill_engine_destroy(engine_));
    engine_ = nullptr;
  }

  // Submits a Responses API request; every event is passed to `on_event` on rill's
  // delivery thread, in order. The std::function is kept alive until its is_last call and
  // freed right after it (or at once if the submit throws; it is then never called).
  Request submit(const std::string& request_json, Callback on_event) {
    if (!on_event) throw std::invalid_argument("rill::Engine::submit: empty callback");
    auto fn = std::make_unique<Callback>(std::move(on_event));
    std::uint64_t id = 0;
    detail::check(rill_engine_submit(engine_, request_json.c_str(), &deliver, fn.get(), &id));
    fn.release();  // owned by rill's callback from here on; deliver() frees it
    return Request{id};
  }

  // Submits a Responses API request whose events are read from the returned Stream.
  Stream stream(const std::string& request_json) {
    std::uint64_t id = 0;
    detail::check(rill_engine_submit(engine_, request_json.c_str(), nullptr, nullptr, &id));
    return Stream(engine_, Request{id});
  }

  // Runs a request to its end and returns its final Response object as JSON: the
  // `response` of its terminal event, exactly as a streamed request ends (what an OpenAI
  // server answers for `stream: false`). Blocks the calling thread until then. A refused
  // request throws Error (nothing is queued); one that ends incomplete, cancelled or failed
  // does not throw: the Response's "status" tells. With a positive `timeout`, a request
  // still running then is cancelled and its (cancelled) Response returned. The request
  // has no id to cancel() it by: use stream() or submit() for that. Throws Error with
  // Status::WrongThread from inside an event callback.
  std::string generate(const std::string& request_json,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    char* json = nullptr;
    std::int32_t ms = timeout.count() > 0 ? detail::to_timeout_ms(timeout) : 0;
    detail::check(rill_engine_generate(engine_, request_json.c_str(), ms, &json));
    return detail::take_string(json);
  }

  // Cancels a request; its events still end with a terminal event (response.incomplete,
  // status "cancelled"). A request that already finished is a no-op.
  void cancel(Request request) { detail::check(rill_engine_cancel(engine_, request.id)); }

  // Engine information and counters as a JSON object.
  std::string stats() const {
    char* json = nullptr;
    detail::check(rill_engine_stats(engine_, &json));
    return detail::take_string(json);
  }

  // The C handle (for calls this wrapper does not cover); still owned by this Engine.
  RillEngine* get() const noexcept { return engine_; }
  // False after a move or close().
  explicit operator bool() const noexcept { return engine_ != nullptr; }

 private:
  static void deliver(void* user_data, std::uint64_t /*request_id*/, const char* event_json,
                      std::size_t event_len, bool is_last) noexcept {
    auto* fn = static_cast<Callback*>(user_data);
    std::string_view event(event_json, event_len);
    if (is_last) {
      std::unique_ptr<Callback> owned(fn);  // the last call: free the function after it
      (*owned)(event, true);
    } else {
      (*fn)(event, false);
    }
  }

  void destroy_quietly() noexcept {
    if (engine_ && rill_engine_destroy(engine_) == RILL_STATUS_OK) engine_ = nullptr;
    // Refused only from inside a callback (WrongThread): the engine is left running
    // rather than freed under rill's own delivery thread.
  }

  RillEngine* engine_ = nullptr;
};

}  // namespace rill

#endif  // RILL_HPP
