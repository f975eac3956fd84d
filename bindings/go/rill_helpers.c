#include <string.h>

#include "rill_helpers.h"
#include "_cgo_export.h"

static void take_error(int32_t status, char **err) {
  if (status == RILL_STATUS_OK || status == RILL_STATUS_NO_EVENT || err == NULL) return;
  const char *msg = rill_last_error();
  *err = strdup(msg ? msg : "");
}

/* Runs on rill's delivery thread; hands the event to Go (rillgoOnEvent copies it). */
static void rillgo_on_event(void *user_data, uint64_t request_id, const char *event_json, size_t event_len,
                            bool is_last) {
  rillgoOnEvent((uintptr_t)user_data, request_id, (char *)event_json, event_len, is_last);
}

int32_t rillgo_create(const char *config_json, RillEngine **out_engine, char **err) {
  int32_t st = (int32_t)rill_engine_create(config_json, out_engine);
  take_error(st, err);
  return st;
}

int32_t rillgo_destroy(RillEngine *engine, char **err) {
  int32_t st = (int32_t)rill_engine_destroy(engine);
  take_error(st, err);
  return st;
}

int32_t rillgo_submit(RillEngine *engine, const char *request_json, uintptr_t handle, uint64_t *out_id,
                      char **err) {
  int32_t st = (int32_t)rill_engine_submit(engine, request_json, rillgo_on_event, (void *)handle, out_id);
  take_error(st, err);
  return st;
}

int32_t rillgo_cancel(RillEngine *engine, uint64_t request_id, char **err) {
  int32_t st = (int32_t)rill_engine_cancel(engine, request_id);
  take_error(st, err);
  return st;
}

int32_t rillgo_stats(RillEngine *engine, char **out_json, char **err) {
  int32_t st = (int32_t)rill_engine_stats(engine, out_json);
  take_error(st, err);
  return st;
}
