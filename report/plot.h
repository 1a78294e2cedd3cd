/* plot.h - scatter/line charts rendered to PNG, for apb's reports.
 *
 * `apb report` draws the accuracy / memory trade-off (accuracy against bits per
 * weight, one series per compression method). Everything is drawn by our own
 * rasteriser (anti-aliased lines and markers) and our own bitmap font (font.h),
 * then written with libpng through an atomic temp-file + rename.
 *
 * Usage:
 *     double bits[] = {1.05, 1.2, 1.5}, acc[] = {0.88, 0.90, 0.91};
 *     apb_plot_series s[] = {{.label = "APB", .n = 3, .x = bits, .y = acc,
 *                             .marker = 0, .connect = 1}};
 *     apb_plot_opts o = {.title = "CIFAR-10", .xlabel = "bits per weight",
 *                        .ylabel = "top-1 accuracy", .width = 900, .height = 600,
 *                        .log_x = 1};            // ranges 0,0: automatic
 *     APB_TRY(apb_plot_png("tradeoff.png", &o, s, 1));
 *
 * Coordinates: pixel (i, j) has its centre at (i, j); apb_plot_map gives the
 * centre of where a data point is drawn.
 */
#ifndef APB_PLOT_H
#define APB_PLOT_H

#include "font.h"
#include "status.h"

enum {
    APB_MARKER_CIRCLE = 0,
    APB_MARKER_SQUARE = 1,
    APB_MARKER_TRIANGLE = 2,
    APB_MARKER_DIAMOND = 3,
    APB_MARKER_CROSS = 4,
    APB_MARKER_PLUS = 5,
    APB_MARKER_COUNT = 6
};

typedef struct {
    const char *label;      /* legend text, e.g. "APB", "binary", "2-bit"; NULL or "": no legend entry */
    int n;
    const double *x, *y;    /* [n] points; must be finite (x > 0 on a log x axis) */
    int marker;             /* APB_MARKER_* : 0 circle, 1 square, 2 triangle, 3 diamond, 4 cross, 5 plus */
    unsigned color;         /* 0xRRGGBB; 0 = built-in palette colour for the series index */
    int connect;            /* draw a line through the points, sorted by x */
    const double *yerr;     /* [n] or NULL: error bars y - yerr .. y + yerr (>= 0, finite) */
} apb_plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;  /* NULL or "": not drawn */
    int width, height;      /* pixels, e.g. 900 x 600; 160..8192 x 120..8192 */
    int log_x;              /* logarithmic x axis (bits per weight from ~1 to 32) */
    double xmin, xmax, ymin, ymax; /* xmin >= xmax (or ymin >= ymax): automatic range
                                      with margins; ticks are "nice" either way */
} apb_plot_opts;

#define APB_PLOT_MAX_TICKS 24

typedef struct {
    double v;               /* data value */
    char label[24];
} apb_plot_tick;

/* Everything placement depends on, resolved from the options and the data. */
typedef struct {
    int width, height;
    int log_x;
    double xmin, xmax, ymin, ymax;  /* data range spanning the plot area */
    int left, top, right, bottom;   /* plot area frame lines (pixel columns / rows) */
    int nxt, nyt;
    apb_plot_tick xt[APB_PLOT_MAX_TICKS], yt[APB_PLOT_MAX_TICKS];
    int legend_x, legend_y, legend_w, legend_h; /* legend box; legend_w == 0: no legend */
    int legend_outside;             /* 1 when no corner of the plot area was free of data */
} apb_plot_frame;

/* Resolves ranges, ticks, margins and the legend position. Fails (APB_EINVAL /
 * APB_ENUMERIC, naming the series and point) on bad options or data. */
apb_status apb_plot_layout(const apb_plot_opts *o, const apb_plot_series *s, int ns,
                           apb_plot_frame *f);

/* Data (x, y) -> pixel centre (px, py) in the image described by `f`. */
void apb_plot_map(const apb_plot_frame *f, double x, double y, double *px, double *py);

/* The colour series `index` is drawn in (its own colour, or the palette's). */
unsigned apb_plot_series_color(const apb_plot_series *s, int index);

/* Renders into a caller buffer rgb[height][width][3]. */
apb_status apb_plot_render(const apb_plot_opts *o, const apb_plot_series *s, int ns,
                           unsigned char *rgb);

/* Renders and writes an RGB PNG atomically; errors name `path`. */
apb_status apb_plot_png(const char *path, const apb_plot_opts *o, const apb_plot_series *s,
                        int ns);

#endif
