/* test_architecture.c - the rooms' dependency rules (docs/ARCHITECTURE.md),
 * checked on the sources: every `#include "x.h"` of a file in room R must name
 * a header of R itself or of a room R may use. The suite runs from the
 * repository root (as `make test` does). A header that exists in no room, or in
 * two, fails too: the rule must be decidable from the name alone.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* Each room and the rooms it may use (besides itself). */
static const struct {
    const char *room, *uses;
} RULES[] = {
    {"core", ""},
    {"kernels", "core"},
    {"infer", "core kernels"},
    {"layers", "core kernels"},
    {"models", "core kernels layers"},
    {"optim", "core kernels"},
    {"data", "core kernels"},
    {"dist", "core"},
    {"train", "core kernels layers models optim data infer dist"},
    {"report", "core kernels layers models optim data infer dist train"},
    {"bench", "core kernels layers models optim data infer dist train"},
    {"import", "core kernels layers models optim data infer dist train"},
    {"cli", "core kernels layers models optim data infer dist train report bench import"},
};
#define NROOMS ((int)(sizeof RULES / sizeof RULES[0]))

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The room holding header `h`, -1 if none, -2 if more than one. */
static int header_room(const char *h)
{
    int found = -1;
    for (int r = 0; r < NROOMS; r++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", RULES[r].room, h);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        fclose(f);
        found = found == -1 ? r : -2;
    }
    return found;
}

static int may_use(int r, const char *room)
{
    if (!strcmp(RULES[r].room, room))
        return 1;
    char uses[256];
    snprintf(uses, sizeof uses, " %s ", RULES[r].uses);
    char word[64];
    snprintf(word, sizeof word, " %s ", room);
    return strstr(uses, word) != NULL;
}

/* Checks one file; returns the number of violations (each printed). */
static int check_file(int r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "  cannot read %s\n", path);
        return 1;
    }
    char line[1024];
    int bad = 0, ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "#include \"", 10))
            continue;
        char h[256];
        const char *q = p + 10, *e = strchr(q, '"');
        if (!e || (size_t)(e - q) >= sizeof h)
            continue;
        memcpy(h, q, (size_t)(e - q));
        h[e - q] = 0;
        int hr = header_room(h);
        if (hr < 0) {
            fprintf(stderr, "  %s:%d: \"%s\" is %s\n", path, ln, h,
                    hr == -1 ? "in no room" : "in more than one room");
            bad++;
        } else if (!may_use(r, RULES[hr].room)) {
            fprintf(stderr, "  %s:%d: %s/ may not use %s/ (\"%s\"); see docs/ARCHITECTURE.md\n", path,
                    ln, RULES[r].room, RULES[hr].room, h);
            bad++;
        }
    }
    fclose(f);
    return bad;
}

APB_TEST(test_architecture_rooms_depend_one_way)
{
    int bad = 0, files = 0;
    for (int r = 0; r < NROOMS; r++) {
        DIR *d = opendir(RULES[r].room);
        CHECK_MSG(d != NULL, "room %s/ not found (run from the repository root)", RULES[r].room);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!has_suffix(e->d_name, ".c") && !has_suffix(e->d_name, ".h"))
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", RULES[r].room, e->d_name);
            bad += check_file(r, path);
            files++;
        }
        closedir(d);
    }
    CHECK_MSG(files > 50, "only %d source files found", files);
    CHECK_MSG(bad == 0, "%d include(s) break the dependency rules", bad);
    return 0;
}

/* The checker itself must catch a violation: a layers/ file using train/. */
APB_TEST(test_architecture_checker_catches_upward_include)
{
    char path[600];
    snprintf(path, sizeof path, "%s/arch_probe.c", apb_test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "#include \"ops.h\"\n#include \"trainer.h\"\n");
    fclose(f);
    int layers = -1, models = -1;
    for (int r = 0; r < NROOMS; r++) {
        if (!strcmp(RULES[r].room, "layers"))
            layers = r;
        if (!strcmp(RULES[r].room, "models"))
            models = r;
    }
    fprintf(stderr, "  (one violation expected below)\n");
    CHECK(check_file(layers, path) == 1);
    CHECK(check_file(models, path) == 1);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "#include \"no_such_header_anywhere.h\"\n");
    fclose(f);
    fprintf(stderr, "  (one violation expected below)\n");
    CHECK(check_file(layers, path) == 1);
    remove(path);
    return 0;
}
