/*
 * CUDA execution provider options for onnxruntime-node 1.29, whose binding creates the CUDA provider
 * with ONNX Runtime's defaults and sets only `device_id` (js/node/src/session_options_helper.cc).
 *
 * infergate preloads this library (LD_PRELOAD) into a replica process only when its model has `cuda:`
 * options. It wraps OrtGetApiBase, the one ONNX Runtime symbol the binding imports, and hands the binding
 * a copy of the OrtApi table in which SessionOptionsAppendExecutionProvider_CUDA_V2 first applies
 * INFERGATE_CUDA_OPTIONS ("key=value;key=value", ONNX Runtime's own option names) with
 * UpdateCUDAProviderOptions. Anything it cannot do is an error from session creation, never a silent
 * default: options that were asked for are either applied or the replica does not start.
 *
 * The table indices come from onnxruntime_c_api.h at ORT_API_VERSION 29 (offsetof(OrtApi, f) / pointer
 * size). The table only ever grows at its end, but its size is per version, so only API 29 is patched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct OrtStatus OrtStatus;
typedef void *OrtFn;
typedef struct {
  const OrtFn *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} OrtApiBase;

enum {
  API_VERSION = 29,
  API_SIZE = 425,
  CREATE_STATUS = 0,
  GET_ERROR_MESSAGE = 2,
  ALLOCATOR_FREE = 76,
  GET_ALLOCATOR_WITH_DEFAULT_OPTIONS = 78,
  RELEASE_STATUS = 93,
  APPEND_CUDA_V2 = 204,
  UPDATE_CUDA_OPTIONS = 206,
  CUDA_OPTIONS_AS_STRING = 207,
};
enum { ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };
enum { MAX_OPTIONS = 32 };

typedef OrtStatus *(*CreateStatusFn)(int code, const char *msg);
typedef const char *(*GetErrorMessageFn)(const OrtStatus *status);
typedef void (*ReleaseStatusFn)(OrtStatus *status);
typedef OrtStatus *(*AppendCudaFn)(void *session_options, const void *cuda_options);
typedef OrtStatus *(*UpdateCudaFn)(void *cuda_options, const char *const *keys, const char *const *values, size_t n);
typedef OrtStatus *(*CudaAsStringFn)(const void *cuda_options, void *allocator, char **out);
typedef OrtStatus *(*GetAllocatorFn)(void **out);
typedef OrtStatus *(*AllocatorFreeFn)(void *allocator, void *p);

static const OrtApiBase *real_base;
static const OrtFn *real_api;
static OrtFn patched_api[API_SIZE];
static OrtApiBase patched_base;

static OrtStatus *fail(int code, const char *what, const char *detail) {
  char msg[2048];
  snprintf(msg, sizeof msg, "infergate CUDA options (%s): %s", what, detail);
  return ((CreateStatusFn)real_api[CREATE_STATUS])(code, msg);
}

/* The options the provider will really use, as ONNX Runtime reports them. */
static void report_effective(const void *cuda_options) {
  void *allocator = NULL;
  char *text = NULL;
  OrtStatus *status = ((GetAllocatorFn)real_api[GET_ALLOCATOR_WITH_DEFAULT_OPTIONS])(&allocator);
  if (!status) status = ((CudaAsStringFn)real_api[CUDA_OPTIONS_AS_STRING])(cuda_options, allocator, &text);
  if (status) {
    ((ReleaseStatusFn)real_api[RELEASE_STATUS])(status);
    return;
  }
  /* Logged (a replica that then fails to start shows what it tried) and reported by the replica in
     /admin/pools. setenv while creating a session is safe: the replica's other thread, if it has one,
     is only waiting for the session to be ready. */
  fprintf(stderr, "infergate: CUDA provider options in effect: %s\n", text);
  setenv("INFERGATE_CUDA_OPTIONS_EFFECTIVE", text, 1);
  ((AllocatorFreeFn)real_api[ALLOCATOR_FREE])(allocator, text);
}

static OrtStatus *append_cuda_v2(void *session_options, const void *cuda_options) {
  const char *spec = getenv("INFERGATE_CUDA_OPTIONS");
  if (spec && *spec) {
    char buf[4096];
    const char *keys[MAX_OPTIONS], *values[MAX_OPTIONS];
    size_t n = 0;
    if (strlen(spec) >= sizeof buf) return fail(ORT_INVALID_ARGUMENT, "INFERGATE_CUDA_OPTIONS", "longer than 4 KiB");
    strcpy(buf, spec);
    for (char *save = NULL, *pair = strtok_r(buf, ";", &save); pair; pair = strtok_r(NULL, ";", &save)) {
      char *eq = strchr(pair, '=');
      if (!eq || eq == pair) return fail(ORT_INVALID_ARGUMENT, pair, "expected key=value");
      if (n == MAX_OPTIONS) return fail(ORT_INVALID_ARGUMENT, spec, "more than 32 options");
      *eq = '\0';
      keys[n] = pair;
      values[n++] = eq + 1;
    }
    /* The binding created these options itself (CreateCUDAProviderOptions), so they may be updated. */
    OrtStatus *status = ((UpdateCudaFn)real_api[UPDATE_CUDA_OPTIONS])((void *)cuda_options, keys, values, n);
    if (status) {
      OrtStatus *wrapped = fail(ORT_FAIL, spec, ((GetErrorMessageFn)real_api[GET_ERROR_MESSAGE])(status));
      ((ReleaseStatusFn)real_api[RELEASE_STATUS])(status);
      return wrapped;
    }
    report_effective(cuda_options);
  }
  return ((AppendCudaFn)real_api[APPEND_CUDA_V2])(session_options, cuda_options);
}

static const OrtFn *get_api(uint32_t version) {
  const OrtFn *api = real_base->GetApi(version);
  if (!api) return api;
  if (version != API_VERSION) {
    char why[96];
    snprintf(why, sizeof why, "the shim knows ONNX Runtime API %d, the binding asked for %u", API_VERSION, version);
    if (!real_api) setenv("INFERGATE_CUDA_OPTIONS_SHIM", why, 1);
    return api;
  }
  if (!real_api) {
    real_api = api;
    memcpy(patched_api, api, sizeof patched_api);
    patched_api[APPEND_CUDA_V2] = (OrtFn)append_cuda_v2;
    /* Read by the replica (process.env): "1" means the options will be applied, anything else says why not. */
    setenv("INFERGATE_CUDA_OPTIONS_SHIM", "1", 1);
  }
  return patched_api;
}

static const char *version_string(void) { return real_base->GetVersionString(); }

const OrtApiBase *OrtGetApiBase(void) {
  if (!real_base) {
    /* The binding loads libonnxruntime.so.1 privately (RTLD_LOCAL), so RTLD_NEXT cannot see it. */
    void *lib = dlopen("libonnxruntime.so.1", RTLD_LAZY | RTLD_NOLOAD);
    const OrtApiBase *(*real)(void) = lib ? (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase") : NULL;
    if (!real) {
      fprintf(stderr, "infergate: CUDA options shim could not find libonnxruntime.so.1's OrtGetApiBase: %s\n", dlerror());
      abort();
    }
    real_base = real();
    patched_base.GetApi = get_api;
    patched_base.GetVersionString = version_string;
  }
  return &patched_base;
}
