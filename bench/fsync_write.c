/* fsync_write.c -- the floor under a durable checkpoint: BYTES bytes written
 * to a file with write(2) and made durable with fsync(2), timed per call.
 * bench/durable.lua compiles it (cc -O2 -o build/fsync_write
 * bench/fsync_write.c) and compares store:checkpoint of a member with it.
 *
 *   build/fsync_write PATH BYTES REPS [overwrite|truncate]
 *
 * overwrite (the default): PATH is opened once and each call writes the
 *   BYTES from offset 0 and fsyncs, so after the first call the blocks exist
 *   and only data (and mtime) reach the disk -- what a WAL does once it has
 *   grown to its size.
 * truncate: each call opens PATH with O_TRUNC, writes, fsyncs and closes: a
 *   new file's blocks allocated every time (what writing a checkpoint file
 *   again costs).
 * Prints "TIMES t1 t2 ... tREPS" (seconds per call, in call order) on one
 * line; the file is left for the caller to remove.  Exit status 1 with a
 * message on stderr when a call fails. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* seconds on the monotonic clock (bench/timing.h's, without its sort order) */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += (size_t)w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: %s PATH BYTES REPS [overwrite|truncate]\n", argv[0]);
    return 2;
  }
  const char *path = argv[1];
  size_t bytes = (size_t)strtoull(argv[2], NULL, 10);
  long reps = strtol(argv[3], NULL, 10);
  int truncate_each = argc == 5 && strcmp(argv[4], "truncate") == 0;
  if (argc == 5 && !truncate_each && strcmp(argv[4], "overwrite") != 0) {
    fprintf(stderr, "%s: mode must be overwrite or truncate, not %s\n", argv[0], argv[4]);
    return 2;
  }
  if (bytes == 0 || reps < 1) {
    fprintf(stderr, "%s: BYTES and REPS must be positive\n", argv[0]);
    return 2;
  }
  unsigned char *buf = malloc(bytes);
  double *t = malloc((size_t)reps * sizeof *t);
  if (!buf || !t) {
    fprintf(stderr, "%s: out of memory\n", argv[0]);
    return 1;
  }
  /* not zeros: bytes that look like data (no file system here compresses,
   * but nothing should be able to skip them) */
  for (size_t k = 0; k < bytes; k++) buf[k] = (unsigned char)(k * 2654435761u >> 13);

  int fd = -1;
  if (!truncate_each) {
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) {
      fprintf(stderr, "%s: %s: %s\n", argv[0], path, strerror(errno));
      return 1;
    }
  }
  for (long r = 0; r < reps; r++) {
    double t0 = now();
    if (truncate_each) {
      fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], path, strerror(errno));
        return 1;
      }
    } else if (lseek(fd, 0, SEEK_SET) < 0) {
      fprintf(stderr, "%s: lseek: %s\n", argv[0], strerror(errno));
      return 1;
    }
    if (write_all(fd, buf, bytes) != 0 || fsync(fd) != 0) {
      fprintf(stderr, "%s: %s: %s\n", argv[0], path, strerror(errno));
      return 1;
    }
    if (truncate_each && close(fd) != 0) {
      fprintf(stderr, "%s: close: %s\n", argv[0], strerror(errno));
      return 1;
    }
    t[r] = now() - t0;
  }
  if (!truncate_each) close(fd);
  printf("TIMES");
  for (long r = 0; r < reps; r++) printf(" %.9f", t[r]);
  printf("\n");
  free(buf);
  free(t);
  return 0;
}
