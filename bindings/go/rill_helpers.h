/* C side of the Go binding: wrappers that read rill_last_error() on the same OS thread
 * as the failing call (it is thread-local), and the event callback trampoline. */
#ifndef RILL_GO_HELPERS_H
#define RILL_GO_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rill.h"

/* Each returns the RillStatus as int32_t. On a status other than OK (and NO_EVENT),
 * *err receives a malloc'd copy of rill_last_error() that the caller frees with free(). */
int32_t rillgo_create(const char *config_json, RillEngine **out_engine, char **err);
int32_t rillgo_destroy(RillEngine *engine, char **err);
/* Submits with the Go callback; `handle` is a runtime/cgo.Handle passed as user_data. */
int32_t rillgo_submit(RillEngine *engine, const char *request_json, uintptr_t handle, uint64_t *out_id,
                      char **err);
int32_t rillgo_cancel(RillEngine *engine, uint64_t request_id, char **err);
/* *out_json is freed with rill_string_free. */
int32_t rillgo_stats(RillEngine *engine, char **out_json, char **err);

#endif
