/*
 * typevisor's optional native helper: the one host call Node lacks for disk reads.
 *
 * preadNowait: preadv2(2) with RWF_NOWAIT (Linux >= 4.14): a read the page cache can serve
 * is a copy on the calling thread; one that would wait for the device fails with EAGAIN at
 * once, and the caller sends it to libuv's thread pool. io_uring tries a read inline the
 * same way before it hands it to a worker. Without it, every 4 KiB read of a cached image
 * costs the vCPU thread two thread wake-ups (host/storage/nowait.ts has the figures).
 *
 * dropCache: posix_fadvise(POSIX_FADV_DONTNEED), so tests can make a read miss the cache.
 *
 * Both return a count or 0 on success and -errno on failure; they never throw for an I/O
 * error. Wrong argument types throw a TypeError.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#if defined(__linux__) && defined(RWF_NOWAIT)
#define HAVE_NOWAIT 1
#else
#define HAVE_NOWAIT 0
#endif

/* Reads argv[0] (fd), argv[2] (position, a non-negative integer); 0 if they are not numbers. */
static int fdAndPosition(napi_env env, napi_value *argv, int32_t *fd, int64_t *pos) {
  double p;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || napi_get_value_double(env, argv[2], &p) != napi_ok) return 0;
  *pos = p >= 0 && p <= 9007199254740992.0 && p == (double)(int64_t)p ? (int64_t)p : -1;
  return 1;
}

static napi_value result(napi_env env, int64_t n) {
  napi_value r;
  napi_create_int64(env, n, &r);
  return r;
}

/* preadNowait(fd, dst: Uint8Array, position) -> bytes read, or -errno */
static napi_value preadNowait(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t pos;
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || !fdAndPosition(env, argv, &fd, &pos)
      || napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "preadNowait(fd, Uint8Array, position)");
    return NULL;
  }
  if (pos < 0) return result(env, -EINVAL);
#if HAVE_NOWAIT
  struct iovec iov = { data, len };
  ssize_t n = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  return result(env, n < 0 ? -errno : n);
#else
  (void)fd; (void)data; (void)len;
  return result(env, -ENOSYS);
#endif
}

/* dropCache(fd, length, position) -> 0, or -errno */
static napi_value dropCache(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t pos;
  int64_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || !fdAndPosition(env, argv, &fd, &pos)
      || napi_get_value_int64(env, argv[1], &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "dropCache(fd, length, position)");
    return NULL;
  }
  if (pos < 0 || len < 0) return result(env, -EINVAL);
#if defined(POSIX_FADV_DONTNEED)
  return result(env, -posix_fadvise(fd, (off_t)pos, (off_t)len, POSIX_FADV_DONTNEED));
#else
  return result(env, -ENOSYS);
#endif
}

static void set(napi_env env, napi_value obj, const char *name, napi_value v) { napi_set_named_property(env, obj, name, v); }

NAPI_MODULE_INIT() {
  napi_value f, errnos;
  napi_create_function(env, "preadNowait", NAPI_AUTO_LENGTH, preadNowait, NULL, &f);
  set(env, exports, "preadNowait", f);
  napi_create_function(env, "dropCache", NAPI_AUTO_LENGTH, dropCache, NULL, &f);
  set(env, exports, "dropCache", f);
  /* This platform's numbers for the errors the caller tells apart. */
  napi_create_object(env, &errnos);
  set(env, errnos, "EAGAIN", result(env, EAGAIN));
  set(env, errnos, "EOPNOTSUPP", result(env, EOPNOTSUPP));
  set(env, errnos, "ENOSYS", result(env, ENOSYS));
  set(env, errnos, "EINVAL", result(env, EINVAL));
  set(env, errnos, "EBADF", result(env, EBADF));
  set(env, exports, "errno", errnos);
  set(env, exports, "nowait", result(env, HAVE_NOWAIT));
  return exports;
}
