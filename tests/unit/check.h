/* tests/unit/check.h -- the unit tests' few lines of harness: cases are rows, checks count. */
#ifndef CAIRN_TEST_CHECK_H
#define CAIRN_TEST_CHECK_H

#include <stdio.h>

static int check_failures; /* failures in the current case */
static int cases_passed, cases_failed;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            if (check_failures++ < 30) /* the first few, with their line */                      \
                printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
        }                                                                                         \
    } while (0)

struct test_case {
    const char *name;
    void (*fn)(void);
};

static int run_cases(const struct test_case *cases)
{
    for (const struct test_case *t = cases; t->name != NULL; t++) {
        check_failures = 0;
        t->fn();
        if (check_failures == 0) {
            cases_passed++;
            printf("ok - %s\n", t->name);
        } else {
            cases_failed++;
            printf("not ok - %s\n", t->name);
        }
    }
    printf("%d passed, %d failed\n", cases_passed, cases_failed);
    return cases_failed ? 1 : 0;
}

#endif
