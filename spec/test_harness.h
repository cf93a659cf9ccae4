/* test_harness.h -- the checks of the C test programs (spec/test_core.c,
 * spec/test_population.c): a failed check prints its file, line and text
 * and counts; the program ends with test_harness_report. */
#ifndef PBT_TEST_HARNESS_H
#define PBT_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

/* status is want_status and err's message is want_msg, exactly */
#define CHECK_MSG(status, want_status, err, want_msg)                        \
  do {                                                                       \
    CHECK((status) == (want_status));                                        \
    if (strcmp((err).msg, (want_msg)) != 0) {                                \
      fprintf(stderr, "%s:%d: message \"%s\", expected \"%s\"\n", __FILE__,  \
              __LINE__, (err).msg, (want_msg));                              \
      failures++;                                                            \
    }                                                                        \
  } while (0)

/* The exit status: 0 when every check passed, else 1 (said on stderr). */
static int test_harness_report(const char *program) {
  if (failures) {
    fprintf(stderr, "%s: %d checks failed\n", program, failures);
    return 1;
  }
  printf("%s: all checks passed\n", program);
  return 0;
}

#endif
