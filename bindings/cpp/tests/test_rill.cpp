// Tests of the C++ binding (include/rill.hpp) against the real default model.
//
// The model is $RILL_MODEL, else the path CMake compiled in (RILL_TEST_MODEL). When
// $RILL_CPP_STREAM_DIR is set, every complete stream is also written there as
// <test>_<n>.jsonl, for tests/check_stream.py to validate with OpenAI's types.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "json_field.hpp"
#include "rill.hpp"

using namespace std::chrono_literals;

namespace {

std::string model_path() {
  const char* env = std::getenv("RILL_MODEL");
  return env && *env ? env : RILL_TEST_MODEL;
}

std::string config(const std::string& extra = "") {
  return "{\"model\":" + json_field::quote(model_path()) + ",\"num_threads\":2" + extra + "}";
}

// A greedy request: deterministic text.
std::string greedy(const std::string& prompt, int max_output_tokens) {
  return "{\"input\":" + json_field::quote(prompt) +
         ",\"temperature\":0,\"max_output_tokens\":" + std::to_string(max_output_tokens) + "}";
}

// A request that runs until it is cancelled (the tests that use it cancel it).
const std::string kEndless =
    R"({"input":"Count to ten thousand.","temperature":0,"max_output_tokens":4000,"ignore_eos":true})";

std::string type_of(const std::string& event) { return json_field::string(event, "type").value_or(""); }

bool is_terminal(const std::string& type) {
  return type == "response.completed" || type == "response.incomplete" || type == "response.failed";
}

// The status of the response in a terminal event (its first "status" field).
std::string response_status(const std::string& event) {
  return json_field::string(event, "status").value_or("");
}

// Writes a stream for tests/check_stream.py when RILL_CPP_STREAM_DIR is set.
void save(const std::vector<std::string>& events) {
  const char* dir = std::getenv("RILL_CPP_STREAM_DIR");
  if (!dir || !*dir) return;
  static std::atomic<int> n{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path = std::string(dir) + "/" + info->test_suite_name() + "_" + info->name() + "_" +
                     std::to_string(n++) + ".jsonl";
  std::ofstream out(path);
  for (const auto& e : events) out << e << "\n";
  ASSERT_TRUE(out.good()) << path;
}

// Checks one request's whole stream (order, one terminal event at the end, deltas adding
// up to the final text) and returns the output text.
std::string check_stream(const std::vector<std::string>& events) {
  save(events);
  EXPECT_GE(events.size(), 3u);
  if (events.size() < 3) return "";
  EXPECT_EQ(type_of(events[0]), "response.created");
  EXPECT_EQ(type_of(events[1]), "response.in_progress");
  std::string deltas, done_text;
  for (std::size_t i = 0; i < events.size(); i++) {
    EXPECT_EQ(json_field::integer(events[i], "sequence_number"), static_cast<long long>(i));
    std::string type = type_of(events[i]);
    EXPECT_EQ(is_terminal(type), i + 1 == events.size()) << "event " << i << ": " << type;
    if (type == "response.output_text.delta") deltas += json_field::string(events[i], "delta").value_or("");
    if (type == "response.output_text.done") done_text = json_field::string(events[i], "text").value_or("?");
  }
  EXPECT_EQ(deltas, done_text);
  return deltas;
}

// Collects a callback request's events; the test waits for the terminal one. Callbacks
// hold it by shared_ptr (see record()), so a test that fails early leaves no callback
// pointing into a finished test.
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  std::vector<bool> lasts;
  std::set<std::thread::id> threads;
  int deltas = 0;

  void add(std::string_view event, bool last) {
    std::lock_guard<std::mutex> lock(mu);
    events.emplace_back(event);
    lasts.push_back(last);
    threads.insert(std::this_thread::get_id());
    if (type_of(events.back()) == "response.output_text.delta") deltas++;
    cv.notify_all();
  }
  // Waits (ctest's per-test timeout is the real limit) until `ready` holds.
  bool wait_for(const std::function<bool()>& ready) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 600s, ready);
  }
  bool wait_last() {
    return wait_for([this] { return !lasts.empty() && lasts.back(); });
  }
  bool wait_delta() {
    return wait_for([this] { return deltas > 0; });
  }
};

rill::Engine::Callback record(std::shared_ptr<Sink> sink) {
  return [sink = std::move(sink)](std::string_view event, bool last) { sink->add(event, last); };
}

// Polls until `weak` expires (the callback's std::function was freed).
bool expires(const std::weak_ptr<int>& weak, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!weak.expired()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::vector<std::string> collect(rill::Stream stream) {
  std::vector<std::string> events;
  for (const rill::Event& e : stream) events.push_back(e.json);
  return events;
}

template <typename F>
rill::Error error_of(F&& f) {
  try {
    f();
  } catch (const rill::Error& e) {
    return e;
  }
  ADD_FAILURE() << "no rill::Error thrown";
  return rill::Error(rill::Status::Ok, "");
}

class EngineTest : public ::testing::Test {
 protected:
  rill::Engine engine{config()};
};

// ---- library, status, Error --------------------------------------------------------------

TEST(Library, VersionAndAbi) {
  EXPECT_FALSE(rill::version().empty());
  EXPECT_EQ(rill::abi_version(), static_cast<std::uint32_t>(RILL_ABI_VERSION));
}

TEST(Library, StatusMirrorsRillStatus) {
  EXPECT_EQ(static_cast<int>(rill::Status::Ok), RILL_STATUS_OK);
  EXPECT_EQ(static_cast<int>(rill::Status::InvalidRequest), RILL_STATUS_INVALID_REQUEST);
  EXPECT_EQ(static_cast<int>(rill::Status::Internal), RILL_STATUS_INTERNAL);
  for (int code = 0; code <= RILL_STATUS_INTERNAL; code++)
    EXPECT_STREQ(rill::to_string(static_cast<rill::Status>(code)), rill_status_str(code));
  static_assert(std::is_same_v<std::underlying_type_t<rill::Status>, std::int32_t>);
}

TEST(Library, EngineIsMoveOnly) {
  static_assert(!std::is_copy_constructible_v<rill::Engine>);
  static_assert(!std::is_copy_assignable_v<rill::Engine>);
  static_assert(std::is_nothrow_move_constructible_v<rill::Engine>);
  static_assert(std::is_nothrow_move_assignable_v<rill::Engine>);
  static_assert(!std::is_copy_constructible_v<rill::Stream>);
  static_assert(std::is_nothrow_move_constructible_v<rill::Stream>);
  using It = rill::Stream::iterator;
  static_assert(std::is_same_v<std::iterator_traits<It>::iterator_category, std::input_iterator_tag>);
  static_assert(std::is_same_v<std::iterator_traits<It>::value_type, rill::Event>);
}

TEST(Create, InvalidJson) {
  rill::Error e = error_of([] { rill::Engine engine("{not json"); });
  EXPECT_EQ(e.status(), rill::Status::InvalidJson);
  EXPECT_FALSE(e.message().empty());
  EXPECT_NE(std::string(e.what()).find(e.message()), std::string::npos);
  EXPECT_NE(std::string(e.what()).find(rill::to_string(rill::Status::InvalidJson)), std::string::npos);
}

TEST(Create, UnknownKeyIsNamed) {
  rill::Error e = error_of([] { rill::Engine engine(config(",\"bogus_key\":1")); });
  EXPECT_EQ(e.status(), rill::Status::InvalidConfig);
  EXPECT_NE(e.message().find("bogus_key"), std::string::npos) << e.message();
}

TEST(Create, MissingModelIsNamed) {
  rill::Error e = error_of([] { rill::Engine engine(R"({"model":"/nonexistent/model.gguf"})"); });
  EXPECT_EQ(e.status(), rill::Status::InvalidConfig);
  EXPECT_NE(e.message().find("/nonexistent/model.gguf"), std::string::npos) << e.message();
}

// ---- streams -----------------------------------------------------------------------------

TEST_F(EngineTest, StreamEndsAfterTerminalEvent) {
  rill::Stream stream = engine.stream(greedy("Name the capital of France.", 24));
  EXPECT_NE(stream.id().id, 0u);
  EXPECT_FALSE(stream.done());
  std::vector<std::string> events;
  int lasts = 0;
  for (const rill::Event& e : stream) {
    events.push_back(e.json);
    lasts += e.last;
    EXPECT_EQ(e.last, is_terminal(type_of(e.json)));
  }
  EXPECT_EQ(lasts, 1);
  EXPECT_TRUE(stream.done());
  std::string text = check_stream(events);
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
  // Iterating again yields nothing; rill no longer knows the id for polling.
  EXPECT_TRUE(stream.begin() == stream.end());
  EXPECT_FALSE(stream.next(0ms).has_value());
  char* json = nullptr;
  EXPECT_EQ(rill_engine_poll_request(engine.get(), stream.id().id, 0, &json, nullptr),
            RILL_STATUS_UNKNOWN_REQUEST);
}

TEST_F(EngineTest, StreamNextWithTimeout) {
  rill::Stream stream = engine.stream(greedy("Name a fruit.", 12));
  std::vector<std::string> events;
  while (!stream.done()) {
    if (std::optional<rill::Event> e = stream.next(2ms)) {
      events.push_back(std::move(e->json));
      EXPECT_EQ(e->last, stream.done());
    }
  }
  check_stream(events);
}

TEST_F(EngineTest, StreamMovesWithItsRequest) {
  rill::Stream a = engine.stream(greedy("Hi", 6));
  rill::Request id = a.id();
  rill::Stream b = std::move(a);
  EXPECT_TRUE(a.done());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_TRUE(a.begin() == a.end());
  EXPECT_EQ(b.id(), id);
  check_stream(collect(std::move(b)));
  // Move-assigning over an unfinished stream cancels and drains the overwritten one.
  rill::Stream c = engine.stream(kEndless);
  rill::Request cancelled = c.id();
  c = engine.stream(greedy("Hi", 4));
  check_stream(collect(std::move(c)));
  char* json = nullptr;
  EXPECT_EQ(rill_engine_poll_request(engine.get(), cancelled.id, 0, &json, nullptr),
            RILL_STATUS_UNKNOWN_REQUEST);
}

TEST_F(EngineTest, CancelStream) {
  rill::Stream stream = engine.stream(kEndless);
  std::vector<std::string> events;
  bool cancelled = false;
  for (const rill::Event& e : stream) {
    events.push_back(e.json);
    if (!cancelled && type_of(e.json) == "response.output_text.delta") {
      engine.cancel(stream.id());
      cancelled = true;
    }
  }
  ASSERT_TRUE(cancelled);
  check_stream(events);
  EXPECT_EQ(type_of(events.back()), "response.incomplete");
  EXPECT_EQ(response_status(events.back()), "cancelled");
  engine.cancel(stream.id());  // already finished: a no-op
}

TEST_F(EngineTest, BreakingOutOfAStreamCancelsAndDrainsIt) {
  rill::Request id;
  {
    rill::Stream stream = engine.stream(kEndless);
    id = stream.id();
    for (const rill::Event& e : stream)
      if (type_of(e.json) == "response.output_text.delta") break;
    EXPECT_FALSE(stream.done());
  }  // ~Stream: cancel, drain to the terminal event
  char* json = nullptr;
  EXPECT_EQ(rill_engine_poll_request(engine.get(), id.id, 0, &json, nullptr),
            RILL_STATUS_UNKNOWN_REQUEST);
  std::string stats = engine.stats();
  EXPECT_EQ(json_field::integer(stats, "cancelled"), 1) << stats;
}

// ---- callbacks ---------------------------------------------------------------------------

TEST_F(EngineTest, CallbackGetsEveryEventOnRillsThreadAndIsFreedAfterLast) {
  auto sink = std::make_shared<Sink>();
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  rill::Request id = engine.submit(greedy("Name the capital of France.", 24),
                                   [cb = record(sink), token = std::move(token)](std::string_view ev, bool last) {
                                     EXPECT_EQ(*token, 0);  // still alive at every call
                                     cb(ev, last);
                                   });
  EXPECT_NE(id.id, 0u);
  ASSERT_TRUE(sink->wait_last());
  EXPECT_TRUE(expires(alive)) << "the std::function was not freed after its is_last call";
  std::lock_guard<std::mutex> lock(sink->mu);
  std::string text = check_stream(sink->events);
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
  for (std::size_t i = 0; i < sink->lasts.size(); i++) EXPECT_EQ(sink->lasts[i], i + 1 == sink->lasts.size());
  ASSERT_EQ(sink->threads.size(), 1u);
  EXPECT_NE(*sink->threads.begin(), std::this_thread::get_id());
}

TEST_F(EngineTest, CallbackAndStreamGiveTheSameGreedyText) {
  std::string request = greedy("Say 'double bubble bath' ten times fast.", 32);
  std::string streamed = check_stream(collect(engine.stream(request)));
  auto sink = std::make_shared<Sink>();
  engine.submit(request, record(sink));
  ASSERT_TRUE(sink->wait_last());
  std::lock_guard<std::mutex> lock(sink->mu);
  EXPECT_EQ(check_stream(sink->events), streamed);
  EXPECT_FALSE(streamed.empty());
}

TEST_F(EngineTest, CancelCallbackRequest) {
  auto sink = std::make_shared<Sink>();
  rill::Request id = engine.submit(kEndless, record(sink));
  ASSERT_TRUE(sink->wait_delta());
  engine.cancel(id);
  ASSERT_TRUE(sink->wait_last());
  std::lock_guard<std::mutex> lock(sink->mu);
  check_stream(sink->events);
  EXPECT_EQ(response_status(sink->events.back()), "cancelled");
}

TEST_F(EngineTest, RefusedSubmitFreesTheCallbackAndNeverCallsIt) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  auto calls = std::make_shared<std::atomic<int>>(0);
  rill::Error e = error_of([&] {
    engine.submit(R"({"input":"hi","frobnicate":true})",
                  [calls, token = std::move(token)](std::string_view, bool) { (*calls)++; });
  });
  EXPECT_EQ(e.status(), rill::Status::InvalidRequest);
  EXPECT_NE(e.message().find("frobnicate"), std::string::npos) << e.message();
  EXPECT_TRUE(alive.expired());
  EXPECT_THROW(engine.submit(greedy("hi", 4), rill::Engine::Callback()), std::invalid_argument);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls->load(), 0);
  check_stream(collect(engine.stream(greedy("Hi", 4))));
}

TEST_F(EngineTest, CloseFromACallbackIsRefused) {
  auto refused = std::make_shared<std::promise<rill::Status>>();
  auto status = refused->get_future();
  engine.submit(greedy("Hi", 4), [this, refused](std::string_view, bool last) {
    if (!last) return;
    try {
      engine.close();
      refused->set_value(rill::Status::Ok);
    } catch (const rill::Error& e) {
      refused->set_value(e.status());
    }
  });
  ASSERT_EQ(status.wait_for(600s), std::future_status::ready);
  EXPECT_EQ(status.get(), rill::Status::WrongThread);
  EXPECT_TRUE(engine);  // still alive and serving
  check_stream(collect(engine.stream(greedy("Hi", 4))));
  engine.close();
  EXPECT_FALSE(engine);
  engine.close();  // no-op
}

TEST(Destroy, DeliversTerminalEventsAndFreesCallbacks) {
  auto sink = std::make_shared<Sink>();
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  {
    rill::Engine engine(config());
    engine.submit(kEndless, [cb = record(sink), token = std::move(token)](std::string_view ev, bool last) {
      cb(ev, last);
    });
    ASSERT_TRUE(sink->wait_delta());
  }  // ~Engine with the request running
  EXPECT_TRUE(alive.expired());  // freed before the destructor returned
  std::lock_guard<std::mutex> lock(sink->mu);
  ASSERT_FALSE(sink->lasts.empty());
  EXPECT_TRUE(sink->lasts.back());
  check_stream(sink->events);
  EXPECT_EQ(response_status(sink->events.back()), "cancelled");
}

TEST(Destroy, ThrowingCallbackTerminates) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        rill::Engine engine(config());
        engine.submit(greedy("Hi", 4), [](std::string_view, bool) { throw std::runtime_error("boom"); });
        std::this_thread::sleep_for(120s);
      },
      "terminate called after throwing.*boom");
}

// ---- generate -----------------------------------------------------------------------------

// The `response` of a terminal event (its last member).
std::string response_of(const std::string& event) {
  const std::string key = "\"response\":";
  auto at = event.find(key);
  if (at == std::string::npos || event.size() < at + key.size() + 1) return "";
  return event.substr(at + key.size(), event.size() - at - key.size() - 1);
}

// A Response with every "id" value emptied and "created_at" zeroed (both sides come from
// rill's one serializer, so the rest compares field by field as text).
std::string without_ids(const std::string& json) {
  std::string out;
  for (std::size_t i = 0; i < json.size();) {
    if (json.compare(i, 6, "\"id\":\"") == 0) {
      out += "\"id\":\"";
      i = json.find('"', i + 6);
      if (i == std::string::npos) break;
    } else if (json.compare(i, 13, "\"created_at\":") == 0) {
      out += "\"created_at\":0";
      for (i += 13; i < json.size() && json[i] >= '0' && json[i] <= '9'; i++) {
      }
    } else {
      out += json[i++];
    }
  }
  return out;
}

TEST_F(EngineTest, GenerateReturnsTheStreamedTerminalResponse) {
  const std::string body = greedy("What is the capital of Italy? Answer in one sentence.", 48);
  engine.generate(body);  // warms the prefix cache: both runs below report the same usage
  std::vector<std::string> events = collect(engine.stream(body));
  check_stream(events);
  std::string generated = engine.generate(body);
  EXPECT_EQ(json_field::string(generated, "status"), "completed") << generated;
  EXPECT_EQ(without_ids(generated), without_ids(response_of(events.back())));
}

TEST_F(EngineTest, GenerateRefusalsLimitsAndTimeout) {
  rill::Error refused = error_of([&] { engine.generate(R"({"input":"hi","temperature":"hot"})"); });
  EXPECT_EQ(refused.status(), rill::Status::InvalidRequest);
  EXPECT_NE(refused.message().find("temperature"), std::string::npos) << refused.message();
  EXPECT_EQ(json_field::integer(engine.stats(), "submitted"), 0);
  std::string cut = engine.generate(greedy("Count to fifty.", 3));
  EXPECT_EQ(json_field::string(cut, "status"), "incomplete") << cut;
  std::string timed = engine.generate(kEndless, 200ms);
  EXPECT_EQ(json_field::string(timed, "status"), "cancelled") << timed;
}

// ---- errors, concurrency, stats ----------------------------------------------------------

TEST_F(EngineTest, BadRequestsThrowAndTheEngineKeepsServing) {
  EXPECT_EQ(error_of([&] { engine.stream("{\"input\":"); }).status(), rill::Status::InvalidJson);
  EXPECT_EQ(error_of([&] { engine.stream("{\"input\":\"\xff\"}"); }).status(), rill::Status::InvalidUtf8);
  rill::Error field = error_of([&] { engine.stream(R"({"input":"hi","temperature":"hot"})"); });
  EXPECT_EQ(field.status(), rill::Status::InvalidRequest);
  EXPECT_NE(field.message().find("temperature"), std::string::npos) << field.message();
  EXPECT_EQ(error_of([&] { engine.cancel(rill::Request{0xdeadbeef}); }).status(), rill::Status::UnknownRequest);
  check_stream(collect(engine.stream(greedy("Hi", 4))));
}

TEST(Errors, ContextLengthExceeded) {
  rill::Engine engine(config(",\"max_model_len\":32"));
  std::string long_prompt;
  for (int i = 0; i < 50; i++) long_prompt += "word ";
  rill::Error e = error_of([&] { engine.stream(greedy(long_prompt, 4)); });
  EXPECT_EQ(e.status(), rill::Status::ContextLengthExceeded);
}

TEST(Errors, MovedFromEngineThrowsNullArgument) {
  rill::Engine a(config());
  rill::Engine b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_TRUE(b);
  EXPECT_EQ(error_of([&] { a.stream(greedy("Hi", 4)); }).status(), rill::Status::NullArgument);
  EXPECT_EQ(error_of([&] { a.stats(); }).status(), rill::Status::NullArgument);
  rill::Engine c(config());
  c = std::move(b);  // destroys c's first engine, takes b's
  check_stream(collect(c.stream(greedy("Hi", 4))));
}

TEST_F(EngineTest, ConcurrentStreamsAndCallbacks) {
  constexpr int kStreams = 3;
  std::vector<std::vector<std::string>> streamed(kStreams);
  std::vector<rill::Request> ids(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; i++) {
    threads.emplace_back([&, i] {
      rill::Stream stream = engine.stream(greedy("Tell me about rivers, part " + std::to_string(i), 16));
      ids[i] = stream.id();
      streamed[i] = collect(std::move(stream));
    });
  }
  auto sink = std::make_shared<Sink>();
  rill::Request cb_id = engine.submit(greedy("Tell me about lakes.", 16), record(sink));
  for (auto& t : threads) t.join();
  ASSERT_TRUE(sink->wait_last());
  std::set<std::uint64_t> distinct{cb_id.id};
  for (int i = 0; i < kStreams; i++) {
    check_stream(streamed[i]);
    distinct.insert(ids[i].id);
  }
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kStreams + 1));
  std::lock_guard<std::mutex> lock(sink->mu);
  check_stream(sink->events);
}

TEST_F(EngineTest, StatsCountRequests) {
  std::string before = engine.stats();
  EXPECT_EQ(json_field::integer(before, "submitted"), 0) << before;
  check_stream(collect(engine.stream(greedy("Hi", 4))));
  auto sink = std::make_shared<Sink>();
  engine.submit(greedy("Hi", 4), record(sink));
  ASSERT_TRUE(sink->wait_last());
  std::string after = engine.stats();
  EXPECT_EQ(json_field::integer(after, "submitted"), 2) << after;
  EXPECT_EQ(json_field::integer(after, "generated"), 8) << after;
}

}  // namespace
