/* embed_example.c - the smallest program that embeds libapbrt: load a model, run
 * it on an all-zero (normalized) image, print the top class.
 *   cc -Iinfer docs/embed_example.c build/libapbrt.a -lm -fopenmp -o embed
 *   (installed: cc embed_example.c $(pkg-config --cflags --libs apbrt)) */
#include <stdio.h>
#include <stdlib.h>

#include "apbrt.h"

int main(int argc, char **argv)
{
    apbrt_model *m;
    if (argc != 2 || apbrt_load(argv[1], &m) != 0) {
        fprintf(stderr, "embed_example: %s\n", argc != 2 ? "usage: embed_example MODEL.apb" : apbrt_errmsg());
        return 1;
    }
    int c, h, w, k = apbrt_num_classes(m), best = 0;
    apbrt_input_shape(m, &c, &h, &w);
    float *x = calloc((size_t)c * h * w, sizeof *x), *logits = malloc((size_t)k * sizeof *logits);
    if (!x || !logits || apbrt_run(m, x, 1, logits) != 0) {
        fprintf(stderr, "embed_example: %s\n", apbrt_errmsg());
        return 1;
    }
    for (int i = 1; i < k; i++)
        best = logits[i] > logits[best] ? i : best;
    printf("top class: %d %s (logit %.4f)\n", best, apbrt_class_name(m, best), logits[best]);
    free(x);
    free(logits);
    apbrt_free(m);
    return 0;
}
