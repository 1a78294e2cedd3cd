/* plot.c - scatter/line chart rasteriser and PNG writer (see plot.h).
 *
 * Kept deliberately small: one layout pass (ranges -> ticks -> margins -> legend
 * placement), then drawing in painter's order (grid, lines, markers, frame,
 * text, legend). Lines are anti-aliased from the distance to each segment, with
 * one coverage mask per series so joints are not blended twice; markers are
 * filled shapes supersampled 4x4 and ringed in white so they stay distinct where
 * they sit on a line or on each other. The PNG is encoded in memory with libpng's
 * simplified API and written through the atomic writer.
 */
#include "plot.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define TEXT_SCALE 2
#define PAD 14           /* outer margin, pixels */
#define TICK_LEN 5
#define MARKER_R 5.5     /* nominal marker radius, pixels */
#define LINE_W 2.2       /* series line width, pixels */
#define LEGEND_ROW 26
#define LEGEND_SAMPLE 34 /* width of the line + marker sample in the legend */

#define COLOR_TEXT 0x222222u
#define COLOR_AXIS 0x555555u
#define COLOR_GRID 0xE4E4E4u
#define COLOR_LEGEND_EDGE 0xC8C8C8u

/* Distinct hues, readable on white; cycled when there are more series. */
static const unsigned palette[] = {0x1F77B4, 0xE8710A, 0x2CA02C, 0xD62728, 0x9467BD,
                                   0x8C564B, 0xE377C2, 0x7F7F7F, 0xBCBD22, 0x17BECF};

unsigned apb_plot_series_color(const apb_plot_series *s, int index)
{
    if (s[index].color)
        return s[index].color & 0xFFFFFFu;
    return palette[index % (int)(sizeof palette / sizeof palette[0])];
}

static int has_text(const char *s) { return s && s[0]; }

/* ---- ticks ---------------------------------------------------------------- */

static double nice_step(double span, int target)
{
    double raw = span / target;
    double mag = pow(10.0, floor(log10(raw)));
    double norm = raw / mag;
    double m = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
    return m * mag;
}

/* Linear ticks at multiples of a 1/2/5 x 10^k step inside [lo, hi]. */
static int ticks_linear(double lo, double hi, int target, apb_plot_tick *t)
{
    double step = nice_step(hi - lo, target);
    double first = ceil(lo / step - 1e-9);
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    double big = fmax(fabs(lo), fabs(hi));
    int n = 0;
    for (double k = first; n < APB_PLOT_MAX_TICKS; k += 1) {
        double v = k * step;
        if (v > hi + step * 1e-9)
            break;
        if (fabs(v) < step * 1e-9)
            v = 0; /* no "-0.00" */
        t[n].v = v;
        if (big >= 1e6 || decimals > 6)
            snprintf(t[n].label, sizeof t[n].label, "%g", v);
        else
            snprintf(t[n].label, sizeof t[n].label, "%.*f", decimals, v);
        n++;
    }
    return n;
}

/* Log-axis ticks: decades for wide ranges, powers of two (1 2 4 8 16 32) for the
 * usual bits-per-weight range, linear nice numbers when even that gives < 2. */
static int ticks_log(double lo, double hi, int target, apb_plot_tick *t)
{
    int n = 0;
    if (log10(hi / lo) >= 2.5) {
        int k0 = (int)ceil(log10(lo) - 1e-9), k1 = (int)floor(log10(hi) + 1e-9);
        int stride = (k1 - k0) / target + 1;
        for (int k = k0; k <= k1 && n < APB_PLOT_MAX_TICKS; k += stride, n++) {
            t[n].v = pow(10.0, k);
            snprintf(t[n].label, sizeof t[n].label, "%g", t[n].v);
        }
        return n;
    }
    int e0 = (int)ceil(log2(lo) - 1e-9), e1 = (int)floor(log2(hi) + 1e-9);
    if (e1 - e0 + 1 >= 2) {
        int stride = (e1 - e0) / target + 1;
        for (int e = e0; e <= e1 && n < APB_PLOT_MAX_TICKS; e += stride, n++) {
            t[n].v = ldexp(1.0, e);
            snprintf(t[n].label, sizeof t[n].label, "%g", t[n].v);
        }
        return n;
    }
    return ticks_linear(lo, hi, target, t);
}

static int make_ticks(int log_axis, double lo, double hi, int pixels, int px_per_tick,
                      apb_plot_tick *t)
{
    int target = pixels / px_per_tick;
    target = target < 2 ? 2 : target > 10 ? 10 : target;
    return log_axis ? ticks_log(lo, hi, target, t) : ticks_linear(lo, hi, target, t);
}

/* ---- layout --------------------------------------------------------------- */

static apb_status check_inputs(const apb_plot_opts *o, const apb_plot_series *s, int ns)
{
    if (!o)
        return apb_fail(APB_EINVAL, "plot: options are NULL");
    if (o->width < 160 || o->width > 8192 || o->height < 120 || o->height > 8192)
        return apb_fail(APB_EINVAL, "plot: size %dx%d outside 160..8192 x 120..8192", o->width,
                        o->height);
    if (ns < 0 || (ns > 0 && !s))
        return apb_fail(APB_EINVAL, "plot: %d series given with series array %p", ns,
                        (const void *)s);
    for (int i = 0; i < ns; i++) {
        const char *name = has_text(s[i].label) ? s[i].label : "(unlabelled)";
        if (s[i].n < 0 || (s[i].n > 0 && (!s[i].x || !s[i].y)))
            return apb_fail(APB_EINVAL, "plot: series %d '%s': n = %d with x/y missing", i, name,
                            s[i].n);
        if (s[i].marker < 0 || s[i].marker >= APB_MARKER_COUNT)
            return apb_fail(APB_EINVAL, "plot: series %d '%s': marker %d not in 0..%d", i, name,
                            s[i].marker, APB_MARKER_COUNT - 1);
        for (int k = 0; k < s[i].n; k++) {
            if (!isfinite(s[i].x[k]) || !isfinite(s[i].y[k]))
                return apb_fail(APB_ENUMERIC, "plot: series %d '%s' point %d is (%g, %g), not finite",
                                i, name, k, s[i].x[k], s[i].y[k]);
            if (s[i].yerr && !(isfinite(s[i].yerr[k]) && s[i].yerr[k] >= 0))
                return apb_fail(APB_ENUMERIC, "plot: series %d '%s' point %d: error bar %g is not "
                                "a finite value >= 0", i, name, k, s[i].yerr[k]);
            if (o->log_x && !(s[i].x[k] > 0))
                return apb_fail(APB_EINVAL,
                                "plot: series %d '%s' point %d: x = %g must be > 0 on a log x axis",
                                i, name, k, s[i].x[k]);
        }
    }
    if (o->xmin < o->xmax) {
        if (!isfinite(o->xmin) || !isfinite(o->xmax))
            return apb_fail(APB_ENUMERIC, "plot: x range [%g, %g] not finite", o->xmin, o->xmax);
        if (o->log_x && !(o->xmin > 0))
            return apb_fail(APB_EINVAL, "plot: x range [%g, %g] must be > 0 on a log x axis",
                            o->xmin, o->xmax);
    }
    if (o->ymin < o->ymax && (!isfinite(o->ymin) || !isfinite(o->ymax)))
        return apb_fail(APB_ENUMERIC, "plot: y range [%g, %g] not finite", o->ymin, o->ymax);
    return APB_OK;
}

/* Data extent padded by 6% per side (in log space for a log axis). */
static void auto_range(int log_axis, double lo, double hi, int have, double *rlo, double *rhi)
{
    if (!have) {
        lo = log_axis ? 1 : 0;
        hi = log_axis ? 10 : 1;
    }
    if (log_axis) {
        lo = log(lo);
        hi = log(hi);
    }
    double span = hi - lo;
    if (span <= 0) {
        span = log_axis ? log(4.0) : (fabs(hi) > 0 ? fabs(hi) * 0.2 : 1.0);
        lo -= span / 2;
        hi += span / 2;
    }
    lo -= 0.06 * span;
    hi += 0.06 * span;
    *rlo = log_axis ? exp(lo) : lo;
    *rhi = log_axis ? exp(hi) : hi;
}

void apb_plot_map(const apb_plot_frame *f, double x, double y, double *px, double *py)
{
    double fx = f->log_x ? (log(x) - log(f->xmin)) / (log(f->xmax) - log(f->xmin))
                         : (x - f->xmin) / (f->xmax - f->xmin);
    double fy = (y - f->ymin) / (f->ymax - f->ymin);
    *px = f->left + fx * (f->right - f->left);
    *py = f->bottom - fy * (f->bottom - f->top);
}

static int legend_entries(const apb_plot_series *s, int ns, int *maxw)
{
    int n = 0;
    *maxw = 0;
    for (int i = 0; i < ns; i++)
        if (has_text(s[i].label)) {
            int w = apb_font_text_width(s[i].label, TEXT_SCALE);
            if (w > *maxw)
                *maxw = w;
            n++;
        }
    return n;
}

static int rect_hit(double x, double y, double x0, double y0, double x1, double y1, double grow)
{
    return x >= x0 - grow && x <= x1 + grow && y >= y0 - grow && y <= y1 + grow;
}

typedef struct {
    double x, y;
} xy_pair;

static int xy_cmp(const void *a, const void *b)
{
    const xy_pair *p = a, *q = b;
    return (p->x > q->x) - (p->x < q->x);
}

/* A malloc'd copy of the series' points sorted by x: the polyline that is drawn.
 * qsort is not stable; equal-x points then join in either order, which only
 * matters for vertical runs and looks the same. */
static apb_status sorted_points(const apb_plot_series *s, xy_pair **out)
{
    *out = malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof **out);
    if (!*out)
        return apb_fail(APB_ENOMEM, "plot: out of memory sorting %d points", s->n);
    for (int k = 0; k < s->n; k++) {
        (*out)[k].x = s->x[k];
        (*out)[k].y = s->y[k];
    }
    qsort(*out, (size_t)s->n, sizeof **out, xy_cmp);
    return APB_OK;
}

/* Liang-Barsky: clips segment a-b to the box [x0, x1] x [y0, y1] in place;
 * returns 0 when nothing of it is inside (or it is not finite). Keeps loops over
 * a segment's pixels bounded when a point maps far outside the image. */
static int clip_segment(double *ax, double *ay, double *bx, double *by, double x0, double y0,
                        double x1, double y1)
{
    double dx = *bx - *ax, dy = *by - *ay, t0 = 0, t1 = 1;
    if (!isfinite(dx) || !isfinite(dy))
        return 0;
    const double p[4] = {-dx, dx, -dy, dy};
    const double q[4] = {*ax - x0, x1 - *ax, *ay - y0, y1 - *ay};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0) {
            if (q[i] < 0)
                return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0) {
            if (t > t1)
                return 0;
            if (t > t0)
                t0 = t;
        } else {
            if (t < t0)
                return 0;
            if (t < t1)
                t1 = t;
        }
    }
    double sx = *ax, sy = *ay;
    *ax = sx + t0 * dx;
    *ay = sy + t0 * dy;
    *bx = sx + t1 * dx;
    *by = sy + t1 * dy;
    return 1;
}

/* How much data a legend box at (x0, y0, w, h) would cover: points (with their
 * marker) and samples every few pixels along connecting lines. */
static apb_status legend_overlap(const apb_plot_frame *f, const apb_plot_series *s, int ns,
                                 int x0, int y0, int w, int h, int *hits)
{
    double x1 = x0 + w, y1 = y0 + h;
    *hits = 0;
    for (int i = 0; i < ns; i++) {
        for (int k = 0; k < s[i].n; k++) {
            double px, py;
            apb_plot_map(f, s[i].x[k], s[i].y[k], &px, &py);
            *hits += 10 * rect_hit(px, py, x0, y0, x1, y1, MARKER_R + 4);
        }
        if (!s[i].connect || s[i].n < 2)
            continue;
        xy_pair *pts;
        APB_TRY(sorted_points(&s[i], &pts));
        for (int k = 0; k + 1 < s[i].n; k++) {
            double ax, ay, bx, by;
            apb_plot_map(f, pts[k].x, pts[k].y, &ax, &ay);
            apb_plot_map(f, pts[k + 1].x, pts[k + 1].y, &bx, &by);
            if (!clip_segment(&ax, &ay, &bx, &by, f->left, f->top, f->right, f->bottom))
                continue;
            int steps = 1 + (int)(hypot(bx - ax, by - ay) / 3);
            for (int t = 0; t <= steps; t++) {
                double u = (double)t / steps;
                *hits += rect_hit(ax + u * (bx - ax), ay + u * (by - ay), x0, y0, x1, y1, 3);
            }
        }
        free(pts);
    }
    return APB_OK;
}

apb_status apb_plot_layout(const apb_plot_opts *o, const apb_plot_series *s, int ns,
                           apb_plot_frame *f)
{
    APB_TRY(check_inputs(o, s, ns));
    memset(f, 0, sizeof *f);
    f->width = o->width;
    f->height = o->height;
    f->log_x = o->log_x != 0;

    double dx0 = INFINITY, dx1 = -INFINITY, dy0 = INFINITY, dy1 = -INFINITY;
    int have = 0;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            dx0 = fmin(dx0, s[i].x[k]);
            dx1 = fmax(dx1, s[i].x[k]);
            double e = s[i].yerr ? s[i].yerr[k] : 0;
            dy0 = fmin(dy0, s[i].y[k] - e);
            dy1 = fmax(dy1, s[i].y[k] + e);
            have = 1;
        }
    if (o->xmin < o->xmax) {
        f->xmin = o->xmin;
        f->xmax = o->xmax;
    } else {
        auto_range(f->log_x, dx0, dx1, have, &f->xmin, &f->xmax);
    }
    if (o->ymin < o->ymax) {
        f->ymin = o->ymin;
        f->ymax = o->ymax;
    } else {
        auto_range(0, dy0, dy1, have, &f->ymin, &f->ymax);
    }

    /* Spans that overflow (data near DBL_MAX) would turn every mapping into NaN. */
    double xs = f->log_x ? log(f->xmax) - log(f->xmin) : f->xmax - f->xmin;
    if (!(isfinite(xs) && xs > 0 && isfinite(f->ymax - f->ymin) && f->ymax > f->ymin))
        return apb_fail(APB_ENUMERIC, "plot: range x [%g, %g] y [%g, %g] cannot be mapped",
                        f->xmin, f->xmax, f->ymin, f->ymax);

    const int fh = apb_font_text_height(TEXT_SCALE);
    f->top = PAD + (has_text(o->title) ? fh + 12 : 4);
    f->bottom = o->height - 1 - (PAD + TICK_LEN + 6 + fh + (has_text(o->xlabel) ? 10 + fh : 0));
    if (f->bottom - f->top < 40)
        return apb_fail(APB_EINVAL, "plot: %dx%d is too small for its labels", o->width,
                        o->height);
    f->nyt = make_ticks(0, f->ymin, f->ymax, f->bottom - f->top, 70, f->yt);
    int ytw = 0;
    for (int k = 0; k < f->nyt; k++) {
        int w = apb_font_text_width(f->yt[k].label, TEXT_SCALE);
        ytw = w > ytw ? w : ytw;
    }
    f->left = PAD + (has_text(o->ylabel) ? fh + 12 : 0) + ytw + TICK_LEN + 6;

    /* Right margin: room for half of the last x tick label. */
    f->right = o->width - 1 - PAD;
    f->nxt = make_ticks(f->log_x, f->xmin, f->xmax, f->right - f->left, 100, f->xt);
    if (f->nxt > 0) {
        int half = apb_font_text_width(f->xt[f->nxt - 1].label, TEXT_SCALE) / 2;
        f->right = o->width - 1 - (half + 8 > PAD ? half + 8 : PAD);
    }
    if (f->right - f->left < 40)
        return apb_fail(APB_EINVAL, "plot: %dx%d is too small for its labels", o->width,
                        o->height);

    int maxlw, nl = legend_entries(s, ns, &maxlw);
    if (nl > 0) {
        f->legend_w = 10 + LEGEND_SAMPLE + 10 + maxlw + 12;
        f->legend_h = 8 + nl * LEGEND_ROW + 2;
        /* Corners first, then the middle of the top and bottom edges. */
        const int m = 10, pw = f->right - f->left, ph = f->bottom - f->top;
        int cx[6] = {f->right - m - f->legend_w, f->left + m, f->right - m - f->legend_w,
                     f->left + m, f->left + (pw - f->legend_w) / 2, f->left + (pw - f->legend_w) / 2};
        int cy[6] = {f->top + m, f->top + m, f->bottom - m - f->legend_h,
                     f->bottom - m - f->legend_h, f->top + m, f->bottom - m - f->legend_h};
        int best = -1, best_hits = 0;
        if (f->legend_w + 2 * m <= pw && f->legend_h + 2 * m <= ph)
            for (int c = 0; c < 6; c++) {
                int h;
                APB_TRY(legend_overlap(f, s, ns, cx[c], cy[c], f->legend_w, f->legend_h, &h));
                if (best < 0 || h < best_hits) {
                    best = c;
                    best_hits = h;
                }
            }
        if (best >= 0 && best_hits == 0) {
            f->legend_x = cx[best];
            f->legend_y = cy[best];
        } else if (o->width - 1 - PAD - f->legend_w - 16 - f->left >= 120) {
            /* Nowhere free inside: put it beside the plot. */
            f->legend_outside = 1;
            f->right = o->width - 1 - PAD - f->legend_w - 16;
            f->legend_x = f->right + 16;
            f->legend_y = f->top;
            f->nxt = make_ticks(f->log_x, f->xmin, f->xmax, f->right - f->left, 100, f->xt);
        } else {
            f->legend_x = cx[best < 0 ? 0 : best];
            f->legend_y = cy[best < 0 ? 0 : best];
        }
    }
    return APB_OK;
}

/* ---- rasterising ---------------------------------------------------------- */

static void fill_rect(apb_canvas *c, int x0, int y0, int x1, int y1, unsigned color, float a)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            apb_canvas_blend(c, x, y, color, a);
}

/* Max-accumulates the coverage of a thick segment into mask[h][w]. */
static void mask_segment(float *mask, const apb_canvas *c, double ax, double ay, double bx,
                         double by, double width)
{
    double hw = width / 2, r = hw + 1;
    if (!clip_segment(&ax, &ay, &bx, &by, c->cx0 - r, c->cy0 - r, c->cx1 + r, c->cy1 + r))
        return;
    int x0 = (int)floor(fmax(fmin(ax, bx) - r, c->cx0));
    int x1 = (int)ceil(fmin(fmax(ax, bx) + r, c->cx1 - 1));
    int y0 = (int)floor(fmax(fmin(ay, by) - r, c->cy0));
    int y1 = (int)ceil(fmin(fmax(ay, by) + r, c->cy1 - 1));
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double t = len2 > 0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double d = hypot(x - (ax + t * dx), y - (ay + t * dy));
            float cov = (float)(hw + 0.5 - d);
            float *m = &mask[(long)y * c->w + x];
            if (cov > *m)
                *m = cov > 1 ? 1 : cov;
        }
}

/* Is (dx, dy) (pixels from the marker centre, y down) inside marker m grown by g? */
static int marker_inside(int m, double dx, double dy, double g)
{
    double ax = fabs(dx), ay = fabs(dy);
    switch (m) {
    case APB_MARKER_CIRCLE:
        return dx * dx + dy * dy <= (MARKER_R + g) * (MARKER_R + g);
    case APB_MARKER_SQUARE:
        return ax <= MARKER_R * 0.9 + g && ay <= MARKER_R * 0.9 + g;
    case APB_MARKER_TRIANGLE: {
        /* Upward equilateral triangle centred on its centroid; growing the
         * inradius (R/2) by g grows the circumradius R by 2g. */
        double R = MARKER_R * 1.3 + 2 * g;
        return dy <= R / 2 && dy >= -R + 1.7320508 * ax;
    }
    case APB_MARKER_DIAMOND:
        return ax + ay <= MARKER_R * 1.3 + g * 1.4142136;
    case APB_MARKER_CROSS: {
        double t = 1.6 + g, len = MARKER_R * 1.45 + g;
        double u = fabs(dx - dy) * 0.70710678, v = fabs(dx + dy) * 0.70710678;
        return (u <= t && v <= len) || (v <= t && u <= len);
    }
    default: { /* plus */
        double t = 1.6 + g, len = MARKER_R * 1.45 + g;
        return (ax <= t && ay <= len) || (ay <= t && ax <= len);
    }
    }
}

/* A marker with a white ring around it, 4x4 supersampled. */
static void draw_marker(apb_canvas *c, int m, double px, double py, unsigned color)
{
    const double ring = 1.3;
    int r = (int)ceil(MARKER_R * 1.8 + 2 * ring) + 1;
    if (!(px > -r && px < c->w + r && py > -r && py < c->h + r))
        return; /* off the canvas (and maybe beyond int range) */
    for (int y = (int)floor(py) - r; y <= (int)ceil(py) + r; y++)
        for (int x = (int)floor(px) - r; x <= (int)ceil(px) + r; x++) {
            int in_ring = 0, in_fill = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++) {
                    double dx = x + (sx - 1.5) / 4 - px, dy = y + (sy - 1.5) / 4 - py;
                    in_ring += marker_inside(m, dx, dy, ring);
                    in_fill += marker_inside(m, dx, dy, 0);
                }
            if (in_ring)
                apb_canvas_blend(c, x, y, 0xFFFFFF, in_ring / 16.0f);
            if (in_fill)
                apb_canvas_blend(c, x, y, color, in_fill / 16.0f);
        }
}

static apb_status draw_series_line(apb_canvas *c, const apb_plot_frame *f,
                                   const apb_plot_series *s, unsigned color, float *mask)
{
    xy_pair *pts;
    APB_TRY(sorted_points(s, &pts));
    memset(mask, 0, (size_t)c->w * c->h * sizeof *mask);
    for (int k = 0; k + 1 < s->n; k++) {
        double ax, ay, bx, by;
        apb_plot_map(f, pts[k].x, pts[k].y, &ax, &ay);
        apb_plot_map(f, pts[k + 1].x, pts[k + 1].y, &bx, &by);
        mask_segment(mask, c, ax, ay, bx, by, LINE_W);
    }
    for (int y = c->cy0; y < c->cy1; y++)
        for (int x = c->cx0; x < c->cx1; x++)
            apb_canvas_blend(c, x, y, color, mask[(long)y * c->w + x]);
    free(pts);
    return APB_OK;
}

static void draw_text_bold(apb_canvas *c, int x, int y, const char *t, unsigned color)
{
    apb_font_draw(c, x, y, t, color, TEXT_SCALE);
    apb_font_draw(c, x + 1, y, t, color, TEXT_SCALE);
}

static void draw_legend(apb_canvas *c, const apb_plot_frame *f, const apb_plot_series *s, int ns)
{
    int x0 = f->legend_x, y0 = f->legend_y, x1 = x0 + f->legend_w, y1 = y0 + f->legend_h;
    fill_rect(c, x0, y0, x1, y1, 0xFFFFFF, 0.92f);
    for (int x = x0; x < x1; x++) {
        apb_canvas_blend(c, x, y0, COLOR_LEGEND_EDGE, 1);
        apb_canvas_blend(c, x, y1 - 1, COLOR_LEGEND_EDGE, 1);
    }
    for (int y = y0; y < y1; y++) {
        apb_canvas_blend(c, x0, y, COLOR_LEGEND_EDGE, 1);
        apb_canvas_blend(c, x1 - 1, y, COLOR_LEGEND_EDGE, 1);
    }
    const int asc = APB_FONT_ASCENT * TEXT_SCALE;
    int row = 0;
    for (int i = 0; i < ns; i++) {
        if (!has_text(s[i].label))
            continue;
        unsigned color = apb_plot_series_color(s, i);
        int cy = y0 + 8 + row * LEGEND_ROW + asc / 2 + 3; /* centre line of this row */
        double sx0 = x0 + 10, sx1 = sx0 + LEGEND_SAMPLE;
        if (s[i].connect) {
            for (int x = (int)sx0; x <= (int)sx1; x++)
                for (int dy = -1; dy <= 1; dy++)
                    apb_canvas_blend(c, x, cy + dy, color, dy == 0 ? 1.0f : 0.6f);
        }
        draw_marker(c, s[i].marker, (sx0 + sx1) / 2, cy, color);
        apb_font_draw(c, (int)sx1 + 10, cy - asc / 2, s[i].label, COLOR_TEXT, TEXT_SCALE);
        row++;
    }
}

/* A vertical bar from y - e to y + e, 2 pixels wide, with 9-pixel caps. */
static void draw_error_bar(apb_canvas *c, const apb_plot_frame *f, double x, double y, double e,
                           unsigned color)
{
    if (!(e > 0))
        return;
    double px, lo, hi, unused;
    apb_plot_map(f, x, y - e, &px, &lo);
    apb_plot_map(f, x, y + e, &unused, &hi);
    int cx = (int)lround(px), y0 = (int)lround(hi), y1 = (int)lround(lo);
    for (int yy = y0; yy <= y1; yy++)
        for (int dx = 0; dx < 2; dx++)
            apb_canvas_blend(c, cx + dx, yy, color, 1);
    for (int dx = -4; dx <= 5; dx++) {
        apb_canvas_blend(c, cx + dx, y0, color, 1);
        apb_canvas_blend(c, cx + dx, y1, color, 1);
    }
}

apb_status apb_plot_render(const apb_plot_opts *o, const apb_plot_series *s, int ns,
                           unsigned char *rgb)
{
    apb_plot_frame f;
    APB_TRY(apb_plot_layout(o, s, ns, &f));
    apb_canvas c;
    apb_canvas_init(&c, rgb, o->width, o->height);
    memset(rgb, 255, (size_t)o->width * o->height * 3);
    const int fh = apb_font_text_height(TEXT_SCALE), asc = APB_FONT_ASCENT * TEXT_SCALE;

    /* Grid and tick marks. */
    int xpix[APB_PLOT_MAX_TICKS], ypix[APB_PLOT_MAX_TICKS];
    for (int k = 0; k < f.nxt; k++) {
        double px, py;
        apb_plot_map(&f, f.xt[k].v, f.ymin, &px, &py);
        xpix[k] = (int)lround(px);
        for (int y = f.top; y <= f.bottom; y++)
            apb_canvas_blend(&c, xpix[k], y, COLOR_GRID, 1);
    }
    for (int k = 0; k < f.nyt; k++) {
        double px, py;
        apb_plot_map(&f, f.xmin, f.yt[k].v, &px, &py);
        ypix[k] = (int)lround(py);
        for (int x = f.left; x <= f.right; x++)
            apb_canvas_blend(&c, x, ypix[k], COLOR_GRID, 1);
    }

    /* Data, clipped to the inside of the frame. */
    apb_canvas_clip(&c, f.left + 1, f.top + 1, f.right, f.bottom);
    float *mask = malloc((size_t)o->width * o->height * sizeof *mask);
    if (!mask)
        return apb_fail(APB_ENOMEM, "plot: out of memory for a %dx%d mask", o->width, o->height);
    for (int i = 0; i < ns; i++)
        if (s[i].connect && s[i].n > 1) {
            apb_status st = draw_series_line(&c, &f, &s[i], apb_plot_series_color(s, i), mask);
            if (st != APB_OK) {
                free(mask);
                return st;
            }
        }
    free(mask);
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n && s[i].yerr; k++)
            draw_error_bar(&c, &f, s[i].x[k], s[i].y[k], s[i].yerr[k], apb_plot_series_color(s, i));
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            double px, py;
            apb_plot_map(&f, s[i].x[k], s[i].y[k], &px, &py);
            draw_marker(&c, s[i].marker, px, py, apb_plot_series_color(s, i));
        }
    apb_canvas_reset_clip(&c);

    /* Frame, ticks and tick labels. */
    for (int x = f.left; x <= f.right; x++) {
        apb_canvas_blend(&c, x, f.top, COLOR_AXIS, 1);
        apb_canvas_blend(&c, x, f.bottom, COLOR_AXIS, 1);
    }
    for (int y = f.top; y <= f.bottom; y++) {
        apb_canvas_blend(&c, f.left, y, COLOR_AXIS, 1);
        apb_canvas_blend(&c, f.right, y, COLOR_AXIS, 1);
    }
    for (int k = 0; k < f.nxt; k++) {
        for (int d = 1; d <= TICK_LEN; d++)
            apb_canvas_blend(&c, xpix[k], f.bottom + d, COLOR_AXIS, 1);
        int w = apb_font_text_width(f.xt[k].label, TEXT_SCALE);
        apb_font_draw(&c, xpix[k] - w / 2, f.bottom + TICK_LEN + 6, f.xt[k].label, COLOR_TEXT,
                      TEXT_SCALE);
    }
    for (int k = 0; k < f.nyt; k++) {
        for (int d = 1; d <= TICK_LEN; d++)
            apb_canvas_blend(&c, f.left - d, ypix[k], COLOR_AXIS, 1);
        int w = apb_font_text_width(f.yt[k].label, TEXT_SCALE);
        apb_font_draw(&c, f.left - TICK_LEN - 6 - w, ypix[k] - asc / 2, f.yt[k].label, COLOR_TEXT,
                      TEXT_SCALE);
    }

    /* Title and axis labels, centred on the plot area. */
    int mid_x = (f.left + f.right) / 2, mid_y = (f.top + f.bottom) / 2;
    if (has_text(o->title)) {
        int w = apb_font_text_width(o->title, TEXT_SCALE) + 1;
        draw_text_bold(&c, mid_x - w / 2, PAD, o->title, COLOR_TEXT);
    }
    if (has_text(o->xlabel)) {
        int w = apb_font_text_width(o->xlabel, TEXT_SCALE);
        apb_font_draw(&c, mid_x - w / 2, f.bottom + TICK_LEN + 6 + fh + 10, o->xlabel,
                      COLOR_TEXT, TEXT_SCALE);
    }
    if (has_text(o->ylabel)) {
        int w = apb_font_text_width(o->ylabel, TEXT_SCALE);
        apb_font_draw_up(&c, PAD, mid_y - w / 2, o->ylabel, COLOR_TEXT, TEXT_SCALE);
    }

    if (f.legend_w > 0)
        draw_legend(&c, &f, s, ns);
    return APB_OK;
}

/* ---- PNG ------------------------------------------------------------------ */

apb_status apb_plot_png(const char *path, const apb_plot_opts *o, const apb_plot_series *s,
                        int ns)
{
    apb_status st = check_inputs(o, s, ns);
    if (st != APB_OK)
        return apb_fail_context(st, "%s", path);
    size_t npix = (size_t)o->width * o->height * 3;
    unsigned char *rgb = malloc(npix);
    if (!rgb)
        return apb_fail(APB_ENOMEM, "%s: out of memory for a %dx%d image", path, o->width,
                        o->height);
    st = apb_plot_render(o, s, ns, rgb);
    if (st != APB_OK) {
        free(rgb);
        return apb_fail_context(st, "%s", path);
    }

    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)o->width;
    img.height = (png_uint_32)o->height;
    img.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    unsigned char *png = NULL;
    /* First call measures, second encodes. */
    if (png_image_write_to_memory(&img, NULL, &size, 0, rgb, 0, NULL))
        png = malloc(size);
    if (!png || !png_image_write_to_memory(&img, png, &size, 0, rgb, 0, NULL)) {
        st = png ? apb_fail(APB_EIO, "%s: PNG encoding failed: %s", path, img.message)
                 : apb_fail(APB_ENOMEM, "%s: cannot encode PNG (%s)", path,
                            img.message[0] ? img.message : "out of memory");
        png_image_free(&img);
        free(png);
        free(rgb);
        return st;
    }
    free(rgb);

    apb_atomic_file af;
    st = apb_atomic_open(&af, path);
    if (st == APB_OK) {
        st = apb_atomic_write(&af, png, size);
        if (st == APB_OK)
            st = apb_atomic_commit(&af);
        else
            apb_atomic_abort(&af);
    }
    free(png);
    return st;
}
