/* C API test: drives include/rill.h from C against the real default model.
 *
 *   test_api MODEL_PATH OUT_DIR
 *
 * - three requests at once: one by callback, two by polling from two threads; one of the
 *   polled requests is cancelled mid-stream; checks each stream's order (sequence numbers,
 *   first and terminal events) and writes every stream to OUT_DIR/stream_*.jsonl, which
 *   tests/check_stream.py then validates against OpenAI's types and the invariants;
 * - callbacks run on a rill thread, not on the submitting or polling threads;
 * - bad input: NULL pointers, invalid UTF-8, invalid JSON, wrong types, empty input, a
 *   prompt longer than max_model_len, unknown request ids: each returns its status and a
 *   message, and the engine keeps serving;
 * - rill_engine_destroy and rill_engine_generate from inside a callback are refused
 *   (WRONG_THREAD);
 * - rill_engine_generate: its Response equals the terminal event's of the same greedy
 *   request streamed (but ids and created_at), a refusal writes nothing and queues
 *   nothing, max_output_tokens ends it incomplete, a timeout cancels it; the Responses
 *   go to OUT_DIR/response_*.json for tests/check_stream.py --response;
 * - destroy with a request still running delivers its terminal event and returns, and
 *   unblocks a rill_engine_generate waiting on another thread (status cancelled).
 * Prints "N passed, N failed" and exits non-zero on any failure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

static atomic_int passed, failed; /* CHECK runs on rill's delivery thread too */
#define CHECK(cond, ...)                                                          \
  do {                                                                            \
    if (cond) {                                                                   \
      passed++;                                                                   \
    } else {                                                                      \
      failed++;                                                                   \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
      fprintf(stderr, __VA_ARGS__);                                               \
      fprintf(stderr, "\n");                                                      \
    }                                                                             \
  } while (0)

/* ---- one request's recorded stream ------------------------------------------------ */
#define MAX_EVENTS 4096
typedef struct {
  uint64_t id;
  char *events[MAX_EVENTS];
  long seq[MAX_EVENTS];
  int n;
  int n_deltas;
  int terminal_seen;
  pthread_t cb_thread;
  int cb_calls;
  uint64_t cb_id; /* request id the callback saw */
} Stream;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static long seq_of(const char *ev) {
  const char *p = strstr(ev, "\"sequence_number\":");
  return p ? strtol(p + 18, NULL, 10) : -1;
}

/* The event type: events start with {"type":"...". */
static int type_is(const char *ev, const char *type) {
  size_t n = strlen(type);
  return strncmp(ev, "{\"type\":\"", 9) == 0 && strncmp(ev + 9, type, n) == 0 && ev[9 + n] == '"';
}

static int is_terminal(const char *ev) {
  return type_is(ev, "response.completed") || type_is(ev, "response.incomplete") ||
         type_is(ev, "response.failed");
}

static void record(Stream *s, const char *ev) {
  pthread_mutex_lock(&mu);
  if (s->n < MAX_EVENTS) {
    s->events[s->n] = strdup(ev);
    s->seq[s->n] = seq_of(ev);
    s->n++;
  }
  if (type_is(ev, "response.output_text.delta")) s->n_deltas++;
  if (is_terminal(ev)) s->terminal_seen++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Sorts by sequence number (two pollers may record one stream's events out of order),
 * checks 0..n-1, created first, exactly one terminal event, last; writes OUT_DIR file. */
static void check_and_write(Stream *s, const char *out_dir, const char *name, int strict_order) {
  for (int i = 0; i < s->n; i++) {
    if (strict_order) CHECK(s->seq[i] == i, "%s: event %d has sequence_number %ld", name, i, s->seq[i]);
    for (int j = i + 1; j < s->n; j++) {
      if (s->seq[j] < s->seq[i]) {
        long t = s->seq[i]; s->seq[i] = s->seq[j]; s->seq[j] = t;
        char *e = s->events[i]; s->events[i] = s->events[j]; s->events[j] = e;
      }
    }
  }
  int contiguous = 1;
  for (int i = 0; i < s->n; i++) contiguous &= s->seq[i] == i;
  CHECK(s->n >= 3, "%s: only %d events", name, s->n);
  CHECK(contiguous, "%s: sequence numbers are not 0..%d", name, s->n - 1);
  if (s->n > 0) {
    CHECK(type_is(s->events[0], "response.created"), "%s: first event %.60s", name, s->events[0]);
    CHECK(is_terminal(s->events[s->n - 1]), "%s: last event %.60s", name, s->events[s->n - 1]);
  }
  CHECK(s->terminal_seen == 1, "%s: %d terminal events", name, s->terminal_seen);
  char path[4096];
  snprintf(path, sizeof path, "%s/stream_%s.jsonl", out_dir, name);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (f) {
    for (int i = 0; i < s->n; i++) fprintf(f, "%s\n", s->events[i]);
    fclose(f);
  }
}

static void free_stream(Stream *s) {
  for (int i = 0; i < s->n; i++) free(s->events[i]);
  s->n = 0;
}

/* ---- callback request --------------------------------------------------------------- */
static RillEngine *g_engine;
static int g_destroy_status_in_cb = -1;
static int g_generate_status_in_cb = -1;
static int g_generate_wrote_in_cb = 0;

static void on_event(void *user_data, uint64_t request_id, const char *json, size_t len, bool is_last) {
  Stream *s = user_data;
  CHECK(strlen(json) == len, "event_len %zu != strlen %zu", len, strlen(json));
  CHECK(s->cb_id == 0 || s->cb_id == request_id, "one stream's callback saw two request ids");
  s->cb_id = request_id;
  CHECK(is_last == is_terminal(json), "is_last %d on %.60s", is_last, json);
  if (s->cb_calls++ == 0) {
    s->cb_thread = pthread_self();
    /* Destroy from inside a callback must be refused, not deadlock. */
    g_destroy_status_in_cb = rill_engine_destroy(g_engine);
    /* So must generate, which would wait for events of this very thread. */
    char *resp = NULL;
    g_generate_status_in_cb = rill_engine_generate(g_engine, "{\"input\":\"Hi.\",\"max_output_tokens\":2}", 0, &resp);
    g_generate_wrote_in_cb = resp != NULL;
  }
  record(s, json);
}

/* ---- pollers -------------------------------------------------------------------------- */
typedef struct {
  Stream *streams[2];
  int cancel_index; /* which stream to cancel after 3 deltas */
  pthread_t self;
} Pollers;

static Pollers g_pollers;
static int g_cancelled;

static void *poller(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    int done = g_pollers.streams[0]->terminal_seen && g_pollers.streams[1]->terminal_seen;
    pthread_mutex_unlock(&mu);
    if (done) break;
    uint64_t id = 0;
    char *ev = NULL;
    bool last = false;
    RillStatus st = rill_engine_poll_event(g_engine, 100, &id, &ev, &last);
    if (st == RILL_STATUS_NO_EVENT) continue;
    CHECK(st == RILL_STATUS_OK, "poll status %d: %s", st, rill_last_error());
    if (st != RILL_STATUS_OK) break;
    Stream *s = id == g_pollers.streams[0]->id ? g_pollers.streams[0] : g_pollers.streams[1];
    CHECK(id == s->id, "polled an event of unexpected request %llu", (unsigned long long)id);
    CHECK(last == is_terminal(ev), "is_last mismatch");
    record(s, ev);
    rill_string_free(ev);
    pthread_mutex_lock(&mu);
    Stream *c = g_pollers.streams[g_pollers.cancel_index];
    int do_cancel = !g_cancelled && c->n_deltas >= 3;
    if (do_cancel) g_cancelled = 1;
    pthread_mutex_unlock(&mu);
    if (do_cancel) {
      RillStatus cs = rill_engine_cancel(g_engine, c->id);
      CHECK(cs == RILL_STATUS_OK, "cancel: %d %s", cs, rill_last_error());
    }
  }
  return NULL;
}

static void wait_terminal(Stream *s) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 300;
  pthread_mutex_lock(&mu);
  while (!s->terminal_seen) {
    if (pthread_cond_timedwait(&cv, &mu, &deadline) != 0) break;
  }
  pthread_mutex_unlock(&mu);
  CHECK(s->terminal_seen, "request %llu did not finish within 300 s", (unsigned long long)s->id);
}

static int last_error_nonempty(void) {
  const char *e = rill_last_error();
  return e && e[0];
}

/* ---- rill_engine_generate ------------------------------------------------------------ */

/* The `response` member of a terminal event: its last member, so the text from there to
 * the event's closing brace. Returns a malloc'd copy. */
static char *response_of(const char *ev) {
  const char *p = strstr(ev, "\"response\":");
  if (!p) return strdup("");
  p += strlen("\"response\":");
  size_t n = strlen(p);
  return strndup(p, n > 0 ? n - 1 : 0);
}

/* A copy of a Response JSON with every "id":"..." value emptied and "created_at" zeroed:
 * rill serializes both sides with the same field order, so what is left compares field by
 * field as text. */
static char *normalized(const char *json) {
  size_t n = strlen(json);
  char *out = malloc(n + 1), *o = out;
  const char *p = json;
  while (*p) {
    if (strncmp(p, "\"id\":\"", 6) == 0) {
      memcpy(o, "\"id\":\"", 6), o += 6, p += 6;
      while (*p && *p != '"') p++;
    } else if (strncmp(p, "\"created_at\":", 13) == 0) {
      memcpy(o, "\"created_at\":0", 14), o += 14, p += 13;
      while (*p >= '0' && *p <= '9') p++;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
  return out;
}

static void write_file(const char *out_dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", out_dir, name);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static char *generate_ok(const char *request, int timeout_ms) {
  char *resp = NULL;
  RillStatus st = rill_engine_generate(g_engine, request, timeout_ms, &resp);
  CHECK(st == RILL_STATUS_OK && resp != NULL, "generate %s: %d %s", request, st, rill_last_error());
  return resp ? resp : strdup("");
}

static void generate_tests(const char *out_dir) {
  const char *greedy = "{\"input\":\"What is the capital of Italy? Answer in one sentence.\",\"temperature\":0,\"max_output_tokens\":48}";
  /* Warm the prefix cache first, so that the streamed and the generated run both find the
   * prompt cached and report the same usage. */
  rill_string_free(generate_ok(greedy, 0));
  static Stream s;
  RillStatus st = rill_engine_submit(g_engine, greedy, on_event, &s, &s.id);
  CHECK(st == RILL_STATUS_OK, "submit greedy: %s", rill_last_error());
  wait_terminal(&s);
  char *streamed = s.n > 0 ? response_of(s.events[s.n - 1]) : strdup("");
  char *generated = generate_ok(greedy, 0);
  CHECK(strstr(generated, "\"status\":\"completed\"") != NULL, "generate status: %.300s", generated);
  CHECK(strncmp(generated, "{\"id\":\"resp_", 12) == 0, "a Response object: %.60s", generated);
  char *a = normalized(streamed), *b = normalized(generated);
  CHECK(strcmp(a, b) == 0, "generate != streamed terminal response:\n  streamed  %s\n  generated %s", a, b);
  write_file(out_dir, "response_completed.json", generated);
  free(a), free(b), free(streamed);
  rill_string_free(generated);
  free_stream(&s);

  /* Refused: a status and a message, nothing written, nothing queued. */
  char *resp = NULL;
  st = rill_engine_generate(g_engine, "{\"input\":\"\"}", 0, &resp);
  CHECK(st == RILL_STATUS_INVALID_REQUEST && resp == NULL && strstr(rill_last_error(), "input"),
        "refused generate: %d %s", st, rill_last_error());
  st = rill_engine_generate(g_engine, "{\"input\":\"x\",\"temperature\":7}", 0, &resp);
  CHECK(st == RILL_STATUS_INVALID_REQUEST && resp == NULL && strstr(rill_last_error(), "temperature"),
        "refused generate: %d %s", st, rill_last_error());
  CHECK(rill_engine_generate(g_engine, "{\"input\":\"x\"}", 0, NULL) == RILL_STATUS_NULL_ARGUMENT, "NULL out");
  CHECK(rill_engine_generate(NULL, "{\"input\":\"x\"}", 0, &resp) == RILL_STATUS_NULL_ARGUMENT, "NULL engine");
  CHECK(rill_engine_generate(g_engine, "{\"input\":", 0, &resp) == RILL_STATUS_INVALID_JSON && resp == NULL,
        "bad JSON");
  uint64_t id = 0;
  char *ev = NULL;
  CHECK(rill_engine_poll_event(g_engine, 0, &id, &ev, NULL) == RILL_STATUS_NO_EVENT, "refusals queued events");

  /* The token limit: incomplete, reason max_output_tokens. */
  char *cut = generate_ok("{\"input\":\"Count from one to fifty in words.\",\"temperature\":0,\"max_output_tokens\":4}", 0);
  CHECK(strstr(cut, "\"status\":\"incomplete\"") && strstr(cut, "\"reason\":\"max_output_tokens\"") &&
            strstr(cut, "\"output_tokens\":4"),
        "cut: %.400s", cut);
  write_file(out_dir, "response_incomplete.json", cut);
  rill_string_free(cut);

  /* A timeout cancels the request and still returns its Response. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char *timed = generate_ok("{\"input\":\"Tell me a very long story.\",\"ignore_eos\":true}", 300);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  CHECK(strstr(timed, "\"status\":\"cancelled\"") && strstr(timed, "\"incomplete_details\":null"),
        "timed out: %.300s", timed);
  CHECK(secs < 30, "a 300 ms timeout took %.1f s", secs);
  write_file(out_dir, "response_cancelled.json", timed);
  rill_string_free(timed);
}

/* A generate left waiting while the engine is destroyed. */
typedef struct {
  RillStatus status;
  char *response;
} Blocked;

static void *blocked_generate(void *arg) {
  Blocked *b = arg;
  b->status = rill_engine_generate(g_engine, "{\"input\":\"Write a very long poem.\",\"ignore_eos\":true}", 0,
                                   &b->response);
  return NULL;
}

static long stats_number(const char *key) {
  char *stats = NULL;
  long v = -1;
  if (rill_engine_stats(g_engine, &stats) == RILL_STATUS_OK) {
    const char *p = strstr(stats, key);
    if (p) v = strtol(p + strlen(key), NULL, 10);
  }
  rill_string_free(stats);
  return v;
}

/* ---- bad input ------------------------------------------------------------------------ */
static void bad_input(const char *model) {
  RillEngine *e = NULL;
  uint64_t id = 0;
  char cfg[8192];
  CHECK(rill_engine_create(NULL, &e) == RILL_STATUS_NULL_ARGUMENT && e == NULL, "NULL config");
  CHECK(last_error_nonempty() && strstr(rill_last_error(), "config_json"), "message: %s", rill_last_error());
  CHECK(rill_engine_create("{\"model\":\"x\"}", NULL) != RILL_STATUS_OK, "NULL out_engine");
  CHECK(rill_engine_create("{\"model\":\"\xff\xfe\"}", &e) == RILL_STATUS_INVALID_UTF8, "invalid UTF-8 config");
  CHECK(rill_engine_create("{not json", &e) == RILL_STATUS_INVALID_JSON, "invalid JSON config");
  snprintf(cfg, sizeof cfg, "{\"model\":\"%s\",\"num_threads\":\"two\"}", model);
  CHECK(rill_engine_create(cfg, &e) == RILL_STATUS_INVALID_CONFIG && strstr(rill_last_error(), "num_threads"),
        "wrong type: %s", rill_last_error());
  snprintf(cfg, sizeof cfg, "{\"model\":\"%s\",\"colour\":1}", model);
  CHECK(rill_engine_create(cfg, &e) == RILL_STATUS_INVALID_CONFIG && strstr(rill_last_error(), "colour"),
        "unknown key: %s", rill_last_error());
  CHECK(rill_engine_create("{\"model\":\"/nonexistent/m.gguf\"}", &e) == RILL_STATUS_INVALID_CONFIG &&
            strstr(rill_last_error(), "/nonexistent/m.gguf"),
        "missing file: %s", rill_last_error());
  CHECK(e == NULL, "out_engine written on failure");

  /* Request-level bad input on the shared engine. */
  RillEngine *g = g_engine;
  CHECK(rill_engine_submit(NULL, "{\"input\":\"x\"}", NULL, NULL, &id) == RILL_STATUS_NULL_ARGUMENT, "NULL engine");
  CHECK(rill_engine_submit(g, NULL, NULL, NULL, &id) == RILL_STATUS_NULL_ARGUMENT, "NULL request");
  CHECK(rill_engine_submit(g, "{\"input\":\"x\"}", NULL, NULL, NULL) == RILL_STATUS_NULL_ARGUMENT, "NULL out id");
  CHECK(rill_engine_submit(g, "{\"input\":\"\xc3\x28\"}", NULL, NULL, &id) == RILL_STATUS_INVALID_UTF8, "bad UTF-8");
  CHECK(rill_engine_submit(g, "{\"input\":", NULL, NULL, &id) == RILL_STATUS_INVALID_JSON, "bad JSON");
  CHECK(rill_engine_submit(g, "{\"input\":\"x\",\"max_output_tokens\":\"ten\"}", NULL, NULL, &id) ==
                RILL_STATUS_INVALID_REQUEST &&
            strstr(rill_last_error(), "max_output_tokens"),
        "wrong type: %s", rill_last_error());
  CHECK(rill_engine_submit(g, "{\"input\":\"\"}", NULL, NULL, &id) == RILL_STATUS_INVALID_REQUEST &&
            strstr(rill_last_error(), "input"),
        "empty input: %s", rill_last_error());
  /* A prompt longer than max_model_len (2048 here). */
  size_t big = 40000;
  char *req = malloc(big + 64);
  strcpy(req, "{\"input\":\"");
  for (size_t i = 10; i < big; i += 5) memcpy(req + i, "word ", 5);
  strcpy(req + big - (big - 10) % 5, "\"}");
  RillStatus st = rill_engine_submit(g, req, NULL, NULL, &id);
  CHECK(st == RILL_STATUS_CONTEXT_LENGTH_EXCEEDED && strstr(rill_last_error(), "max_model_len"),
        "long prompt: %d %s", st, rill_last_error());
  free(req);
  CHECK(rill_engine_cancel(g, 987654321) == RILL_STATUS_UNKNOWN_REQUEST && last_error_nonempty(), "cancel unknown");
  CHECK(rill_engine_cancel(NULL, 1) == RILL_STATUS_NULL_ARGUMENT, "cancel NULL engine");
  char *ev = NULL;
  CHECK(rill_engine_poll_request(g, 987654321, 0, &ev, NULL) == RILL_STATUS_UNKNOWN_REQUEST && ev == NULL,
        "poll unknown");
  CHECK(rill_engine_poll_event(g, 0, NULL, &ev, NULL) == RILL_STATUS_NULL_ARGUMENT, "poll NULL out");
  CHECK(rill_engine_poll_event(g, 0, &id, &ev, NULL) == RILL_STATUS_NO_EVENT, "nothing queued by refusals");
  CHECK(strcmp(rill_status_str(RILL_STATUS_INVALID_REQUEST), "invalid request") == 0, "status_str");
  CHECK(strcmp(rill_status_str(12345), "unknown status code") == 0, "status_str unknown");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL_PATH OUT_DIR\n", argv[0]);
    return 2;
  }
  const char *model = argv[1], *out_dir = argv[2];
  CHECK(rill_abi_version() == RILL_ABI_VERSION, "ABI %u vs header %u", rill_abi_version(), RILL_ABI_VERSION);
  CHECK(strlen(rill_version()) > 0, "version");

  char cfg[8192];
  snprintf(cfg, sizeof cfg, "{\"model\":\"%s\",\"num_threads\":2,\"max_num_seqs\":4,\"max_model_len\":2048}", model);
  RillStatus st = rill_engine_create(cfg, &g_engine);
  CHECK(st == RILL_STATUS_OK, "create: %d %s", st, rill_last_error());
  if (st != RILL_STATUS_OK) goto done;

  /* Three requests at once. */
  static Stream a, b, c;
  st = rill_engine_submit(g_engine, "{\"input\":\"Name the capital of France.\",\"temperature\":0,\"max_output_tokens\":48}",
                          on_event, &a, &a.id);
  CHECK(st == RILL_STATUS_OK && a.id != 0, "submit a: %s", rill_last_error());
  st = rill_engine_submit(g_engine, "{\"input\":\"Count from one to two hundred in words.\",\"temperature\":0,\"ignore_eos\":true}", NULL, NULL,
                          &b.id);
  CHECK(st == RILL_STATUS_OK, "submit b: %s", rill_last_error());
  st = rill_engine_submit(g_engine,
                          "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Name three "
                          "colors.\"}]}],\"max_output_tokens\":24,\"seed\":7}",
                          NULL, NULL, &c.id);
  CHECK(st == RILL_STATUS_OK, "submit c: %s", rill_last_error());
  g_pollers.streams[0] = &b;
  g_pollers.streams[1] = &c;
  g_pollers.cancel_index = 0;
  pthread_t p1, p2;
  pthread_create(&p1, NULL, poller, NULL);
  pthread_create(&p2, NULL, poller, NULL);
  wait_terminal(&a);
  pthread_join(p1, NULL);
  pthread_join(p2, NULL);
  CHECK(!pthread_equal(a.cb_thread, pthread_self()) && !pthread_equal(a.cb_thread, p1) &&
            !pthread_equal(a.cb_thread, p2),
        "callback ran on a host thread");
  CHECK(g_destroy_status_in_cb == RILL_STATUS_WRONG_THREAD, "destroy in callback returned %d",
        g_destroy_status_in_cb);
  CHECK(g_generate_status_in_cb == RILL_STATUS_WRONG_THREAD && !g_generate_wrote_in_cb,
        "generate in callback returned %d", g_generate_status_in_cb);
  CHECK(a.cb_id == a.id, "callback request id %llu, submit returned %llu", (unsigned long long)a.cb_id,
        (unsigned long long)a.id);
  check_and_write(&a, out_dir, "callback", 1);
  check_and_write(&b, out_dir, "polled_cancelled", 0);
  check_and_write(&c, out_dir, "polled", 0);
  CHECK(b.n > 0 && type_is(b.events[b.n - 1], "response.incomplete") && strstr(b.events[b.n - 1], "\"cancelled\""),
        "cancelled stream ends with %.80s", b.n ? b.events[b.n - 1] : "");
  CHECK(a.n > 0 && strstr(a.events[a.n - 1], "Paris"), "answer mentions Paris");

  bad_input(model);
  generate_tests(out_dir);

  /* The engine still serves after all that. */
  static Stream d;
  st = rill_engine_submit(g_engine, "{\"input\":\"Say hello.\",\"max_output_tokens\":8}", on_event, &d, &d.id);
  CHECK(st == RILL_STATUS_OK, "submit after bad input: %s", rill_last_error());
  wait_terminal(&d);
  char *stats = NULL;
  CHECK(rill_engine_stats(g_engine, &stats) == RILL_STATUS_OK && strstr(stats, "\"cancelled\":2"), "stats: %s",
        stats ? stats : "");
  rill_string_free(stats);

  /* Destroy with a request still running: its terminal event arrives before destroy returns. */
  static Stream e;
  st = rill_engine_submit(g_engine, "{\"input\":\"Tell me a very long story.\",\"ignore_eos\":true}", on_event, &e,
                          &e.id);
  CHECK(st == RILL_STATUS_OK, "submit e");
  /* And a generate blocked on another thread: destroy cancels it and it returns. */
  long submitted = stats_number("\"submitted\":");
  static Blocked blocked;
  pthread_t gen_thread;
  pthread_create(&gen_thread, NULL, blocked_generate, &blocked);
  for (int i = 0; i < 3000 && stats_number("\"submitted\":") <= submitted; i++) usleep(10000);
  CHECK(stats_number("\"submitted\":") == submitted + 1, "the blocked generate was not submitted");
  pthread_mutex_lock(&mu);
  while (e.n_deltas < 2) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  CHECK(rill_engine_destroy(g_engine) == RILL_STATUS_OK, "destroy");
  pthread_join(gen_thread, NULL);
  CHECK(blocked.status == RILL_STATUS_OK && blocked.response &&
            strstr(blocked.response, "\"status\":\"cancelled\""),
        "generate during destroy: %d %.200s", blocked.status, blocked.response ? blocked.response : "");
  if (blocked.response) write_file(out_dir, "response_destroyed.json", blocked.response);
  rill_string_free(blocked.response);
  CHECK(e.terminal_seen == 1, "terminal event delivered before destroy returned");
  CHECK(e.n > 0 && strstr(e.events[e.n - 1], "\"cancelled\""), "destroyed request ends cancelled");
  check_and_write(&e, out_dir, "destroyed", 1);
  CHECK(rill_engine_destroy(NULL) == RILL_STATUS_OK, "destroy NULL");
  free_stream(&a); free_stream(&b); free_stream(&c); free_stream(&d); free_stream(&e);
done:
  printf("%d passed, %d failed\n", atomic_load(&passed), atomic_load(&failed));
  return atomic_load(&failed) ? 1 : 0;
}
