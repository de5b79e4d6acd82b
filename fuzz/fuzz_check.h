#pragma once

#include <cstdio>
#include <cstdlib>

/// An invariant of a fuzz target. Unlike assert(), it stays on in release builds; a failure
/// aborts, which libFuzzer reports as a crash and saves the input.
#define FUZZ_CHECK(condition)                                                                 \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (false)
