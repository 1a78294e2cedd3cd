/* test_plot.c - the plotting library and its bitmap font.
 *
 * Renders real PNGs and reads them back with libpng, so the checks cover the
 * whole path: layout -> rasteriser -> encoder -> atomic file.
 */
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "font.h"
#include "plot.h"
#include "test.h"

static unsigned char *read_png(const char *path, int *w, int *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return NULL;
    im.format = PNG_FORMAT_RGB;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&im);
        return NULL;
    }
    *w = (int)im.width;
    *h = (int)im.height;
    return buf;
}

static unsigned pixel(const unsigned char *rgb, int w, int x, int y)
{
    const unsigned char *p = rgb + ((long)y * w + x) * 3;
    return (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
}

static int color_dist(unsigned a, unsigned b)
{
    int d = 0;
    for (int s = 0; s < 24; s += 8)
        d += abs((int)(a >> s & 255) - (int)(b >> s & 255));
    return d;
}

/* Is there a pixel of `color` (within a small tolerance) within r of (x, y)? */
static int color_near(const unsigned char *rgb, int w, int h, double x, double y, int r,
                      unsigned color)
{
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            int px = (int)lround(x) + dx, py = (int)lround(y) + dy;
            if (px >= 0 && px < w && py >= 0 && py < h && color_dist(pixel(rgb, w, px, py), color) <= 6)
                return 1;
        }
    return 0;
}

static const double sx0[] = {0.5, 1.5, 2.5, 3.5}, sy0[] = {0.20, 0.45, 0.55, 0.60};
static const double sx1[] = {4.0, 1.0, 2.0}, sy1[] = {0.80, 0.10, 0.90};
static const double sx2[] = {3.0}, sy2[] = {0.30};

APB_TEST(test_plot_png_roundtrip)
{
    apb_plot_series s[3] = {
        {.label = "APB", .n = 4, .x = sx0, .y = sy0, .marker = 0, .color = 0x1060C0, .connect = 1},
        {.label = "binary", .n = 3, .x = sx1, .y = sy1, .marker = 1, .color = 0xE04010, .connect = 1},
        {.label = "fp32", .n = 1, .x = sx2, .y = sy2, .marker = 3}, /* palette colour */
    };
    apb_plot_opts o = {.title = "accuracy vs memory", .xlabel = "bits per weight",
                       .ylabel = "accuracy", .width = 640, .height = 420};
    char path[600];
    snprintf(path, sizeof path, "%s/plot.png", apb_test_tmpdir());
    CHECK_OK(apb_plot_png(path, &o, s, 3));

    int w = 0, h = 0;
    unsigned char *img = read_png(path, &w, &h);
    CHECK_MSG(img != NULL, "cannot read back %s", path);
    int ok = w == 640 && h == 420;
    apb_plot_frame f;
    ok = ok && apb_plot_layout(&o, s, 3, &f) == APB_OK;
    if (!ok) {
        free(img);
        CHECK_MSG(0, "size %dx%d or layout failed: %s", w, h, apb_errmsg());
    }
    unsigned colors[3] = {0x1060C0, 0xE04010, apb_plot_series_color(s, 2)};
    CHECK(colors[2] != 0 && colors[2] != colors[0] && colors[2] != colors[1]);

    int bad = 0;
    for (int i = 0; i < 3 && !bad; i++)
        for (int k = 0; k < s[i].n; k++) {
            double px, py;
            apb_plot_map(&f, s[i].x[k], s[i].y[k], &px, &py);
            if (!(px > f.left && px < f.right && py > f.top && py < f.bottom) ||
                !color_near(img, w, h, px, py, 1, colors[i])) {
                fprintf(stderr, "  series %d point %d: no colour %06x near (%.1f, %.1f)\n", i, k,
                        colors[i], px, py);
                bad = 1;
                break;
            }
        }
    /* Somewhere no data goes (between ticks, inside the plot): still background. */
    double ex, ey;
    apb_plot_map(&f, 3.7, 0.95, &ex, &ey);
    unsigned empty = pixel(img, w, (int)lround(ex), (int)lround(ey));
    unsigned corner0 = pixel(img, w, 0, 0), corner1 = pixel(img, w, w - 1, h - 1);
    int title_ink = 0, axis_ink = 0;
    for (int y = 0; y < f.top - 2; y++)
        for (int x = 0; x < w; x++)
            title_ink += color_dist(pixel(img, w, x, y), 0xFFFFFF) > 300;
    for (int y = f.top; y <= f.bottom; y++)
        axis_ink += color_dist(pixel(img, w, f.left, y), 0x555555) < 30;
    /* Legend: inside the image and clear of every point. */
    int legend_clear = f.legend_w > 0 && f.legend_x >= 0 && f.legend_y >= 0 &&
                       f.legend_x + f.legend_w <= w && f.legend_y + f.legend_h <= h;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < s[i].n; k++) {
            double px, py;
            apb_plot_map(&f, s[i].x[k], s[i].y[k], &px, &py);
            if (px > f.legend_x - 6 && px < f.legend_x + f.legend_w + 6 && py > f.legend_y - 6 &&
                py < f.legend_y + f.legend_h + 6)
                legend_clear = 0;
        }
    free(img);
    CHECK(!bad);
    CHECK_MSG(corner0 == 0xFFFFFF && corner1 == 0xFFFFFF, "corners %06x %06x", corner0, corner1);
    CHECK_MSG(empty == 0xFFFFFF, "empty plot area pixel is %06x", empty);
    CHECK_MSG(title_ink > 100, "only %d ink pixels above the plot area", title_ink);
    CHECK_MSG(axis_ink > (f.bottom - f.top) * 9 / 10, "left axis: %d of %d pixels", axis_ink,
              f.bottom - f.top + 1);
    CHECK(legend_clear);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    CHECK_MSG(access(tmp, F_OK) != 0, "temporary file %s left behind", tmp);
    return 0;
}

/* Axis mapping and tick rules: frame corners, log midpoint, 1/2/5 steps,
 * power-of-two ticks for bits per weight. */
APB_TEST(test_plot_layout_ticks)
{
    const double bx[] = {1.0, 1.3, 2.0, 4.0, 32.0}, by[] = {0.61, 0.83, 0.87, 0.88, 0.89};
    apb_plot_series s = {.label = "APB", .n = 5, .x = bx, .y = by, .connect = 1};
    apb_plot_opts o = {.width = 900, .height = 600, .log_x = 1};
    apb_plot_frame f;
    CHECK_OK(apb_plot_layout(&o, &s, 1, &f));
    CHECK(f.xmin < 1.0 && f.xmax > 32.0 && f.ymin < 0.61 && f.ymax > 0.89);
    const char *want[] = {"1", "2", "4", "8", "16", "32"};
    CHECK_MSG(f.nxt == 6, "%d x ticks", f.nxt);
    for (int k = 0; k < 6; k++)
        CHECK_MSG(strcmp(f.xt[k].label, want[k]) == 0, "x tick %d is '%s'", k, f.xt[k].label);
    CHECK(f.nyt >= 3);
    double step = f.yt[1].v - f.yt[0].v, mag = pow(10, floor(log10(step))), m = step / mag;
    CHECK_MSG(fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6, "y step %g", step);
    for (int k = 1; k < f.nyt; k++)
        CHECK_CLOSE(f.yt[k].v - f.yt[k - 1].v, step, 1e-9, 1e-12);
    CHECK(f.yt[0].v >= f.ymin && f.yt[f.nyt - 1].v <= f.ymax);

    double px, py;
    apb_plot_map(&f, f.xmin, f.ymin, &px, &py);
    CHECK_CLOSE(px, f.left, 0, 1e-9);
    CHECK_CLOSE(py, f.bottom, 0, 1e-9);
    apb_plot_map(&f, f.xmax, f.ymax, &px, &py);
    CHECK_CLOSE(px, f.right, 0, 1e-9);
    CHECK_CLOSE(py, f.top, 0, 1e-9);
    apb_plot_map(&f, sqrt(f.xmin * f.xmax), 0.5 * (f.ymin + f.ymax), &px, &py);
    CHECK_CLOSE(px, 0.5 * (f.left + f.right), 0, 1e-9);
    CHECK_CLOSE(py, 0.5 * (f.top + f.bottom), 0, 1e-9);

    /* Explicit range on a linear axis: ticks at 0, 0.2, ..., 1 labelled as such. */
    apb_plot_opts o2 = {.width = 500, .height = 400, .xmin = 0, .xmax = 10, .ymin = 0, .ymax = 1};
    CHECK_OK(apb_plot_layout(&o2, &s, 1, &f));
    CHECK(f.xmin == 0 && f.xmax == 10 && f.ymin == 0 && f.ymax == 1);
    CHECK(f.nyt >= 3 && strcmp(f.yt[0].label, "0.0") == 0);
    CHECK_MSG(strcmp(f.yt[f.nyt - 1].label, "1.0") == 0, "last y tick '%s'", f.yt[f.nyt - 1].label);
    /* 1/2/5 x 10^k steps over spans that need each of them. */
    const double spans[] = {0.3, 0.7, 1.3, 2.2, 17, 420, 3.5e-3, 9e6};
    for (int i = 0; i < 8; i++) {
        apb_plot_opts o3 = {.width = 700, .height = 500, .xmin = 1, .xmax = 2, .ymin = -0.1 * spans[i],
                            .ymax = 0.9 * spans[i]};
        CHECK_OK(apb_plot_layout(&o3, &s, 1, &f));
        CHECK_MSG(f.nyt >= 3 && f.nyt <= 11, "span %g: %d ticks", spans[i], f.nyt);
        double st = f.yt[1].v - f.yt[0].v, mg = pow(10, floor(log10(st) + 1e-9)), mm = st / mg;
        CHECK_MSG(fabs(mm - 1) < 1e-6 || fabs(mm - 2) < 1e-6 || fabs(mm - 5) < 1e-6,
                  "span %g: step %g", spans[i], st);
        for (int k = 0; k < f.nyt; k++) {
            CHECK_CLOSE(f.yt[k].v / st, round(f.yt[k].v / st), 0, 1e-6);
            CHECK_CLOSE(atof(f.yt[k].label), f.yt[k].v, 1e-9, st * 1e-6);
        }
    }
    /* Wide log range: decades. */
    const double wx[] = {0.01, 1000}, wy[] = {0, 1};
    apb_plot_series ws = {.n = 2, .x = wx, .y = wy};
    CHECK_OK(apb_plot_layout(&o, &ws, 1, &f));
    CHECK_MSG(f.nxt >= 3 && strcmp(f.xt[0].label, "0.01") == 0, "first decade '%s'", f.xt[0].label);
    for (int k = 1; k < f.nxt; k++)
        CHECK_CLOSE(f.xt[k].v / f.xt[k - 1].v, 10, 1e-9, 0);
    CHECK(f.legend_w == 0); /* no labels, no legend */
    return 0;
}

APB_TEST(test_plot_errors)
{
    const double x[] = {1, 2}, y[] = {0.5, 0.6};
    apb_plot_series s = {.label = "a", .n = 2, .x = x, .y = y};
    apb_plot_opts o = {.title = "t", .width = 300, .height = 200};
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/plot.png", apb_test_tmpdir());
    apb_clear_error();
    CHECK(apb_plot_png(path, &o, &s, 1) == APB_EIO);
    CHECK_MSG(strstr(apb_errmsg(), path) != NULL, "message '%s' does not name the path",
              apb_errmsg());
    CHECK(access(path, F_OK) != 0);

    apb_plot_frame f;
    const double neg[] = {0, 2};
    apb_plot_series sn = {.label = "bad", .n = 2, .x = neg, .y = y};
    apb_plot_opts lo = o;
    lo.log_x = 1;
    CHECK(apb_plot_layout(&lo, &sn, 1, &f) == APB_EINVAL);
    CHECK_MSG(strstr(apb_errmsg(), "bad") != NULL, "'%s'", apb_errmsg());
    const double nan_y[] = {0.5, NAN};
    apb_plot_series sq = {.label = "q", .n = 2, .x = x, .y = nan_y};
    CHECK(apb_plot_layout(&o, &sq, 1, &f) == APB_ENUMERIC);
    apb_plot_series sm = s;
    sm.marker = 6;
    CHECK(apb_plot_layout(&o, &sm, 1, &f) == APB_EINVAL);
    apb_plot_opts tiny = o;
    tiny.width = 20;
    CHECK(apb_plot_layout(&tiny, &s, 1, &f) == APB_EINVAL);
    const double hx[] = {-1.5e308, 1.5e308}, hy[] = {0, 1};
    apb_plot_series sh = {.label = "huge", .n = 2, .x = hx, .y = hy};
    CHECK(apb_plot_layout(&o, &sh, 1, &f) == APB_ENUMERIC);
    /* No data at all still draws (empty axes). */
    snprintf(path, sizeof path, "%s/empty.png", apb_test_tmpdir());
    CHECK_OK(apb_plot_png(path, &o, NULL, 0));
    return 0;
}

static int glyph_equal(int wa, const unsigned char *a, int wb, const unsigned char *b)
{
    return wa == wb && memcmp(a, b, APB_FONT_ROWS) == 0;
}

APB_TEST(test_plot_font_glyphs)
{
    unsigned char rows[95][APB_FONT_ROWS];
    int width[95];
    for (int ch = 32; ch < 127; ch++) {
        width[ch - 32] = apb_font_glyph(ch, rows[ch - 32]);
        int ink = 0;
        for (int r = 0; r < APB_FONT_ROWS; r++) {
            ink += rows[ch - 32][r] != 0;
            CHECK_MSG((rows[ch - 32][r] >> width[ch - 32]) == 0, "'%c' row %d wider than %d", ch,
                      r, width[ch - 32]);
        }
        CHECK_MSG(width[ch - 32] >= 1 && width[ch - 32] <= APB_FONT_COLS, "'%c' width %d", ch,
                  width[ch - 32]);
        CHECK_MSG(ch == ' ' ? ink == 0 : ink > 0, "'%c' has %d inked rows", ch, ink);
    }
    for (int a = 0; a < 95; a++)
        for (int b = a + 1; b < 95; b++)
            CHECK_MSG(!glyph_equal(width[a], rows[a], width[b], rows[b]), "'%c' and '%c' look the same",
                      a + 32, b + 32);
    /* Unprintable bytes draw as '?'. */
    unsigned char q[APB_FONT_ROWS], t[APB_FONT_ROWS];
    int wq = apb_font_glyph('?', q);
    CHECK(glyph_equal(apb_font_glyph('\t', t), t, wq, q));
    CHECK(glyph_equal(apb_font_glyph(200, t), t, wq, q));
    /* Width: glyphs plus one spacing column between them, times the scale. */
    CHECK(apb_font_text_width("", 2) == 0);
    CHECK(apb_font_text_width("Ab", 3) == 3 * (width['A' - 32] + 1 + width['b' - 32]));
    CHECK(apb_font_text_height(2) == 2 * APB_FONT_ROWS);
    return 0;
}

/* Drawn pixels match the glyph bits, both horizontally and rotated for the y label. */
APB_TEST(test_plot_font_draw)
{
    enum { W = 64, H = 48 };
    unsigned char buf[W * H * 3];
    apb_canvas c;
    apb_canvas_init(&c, buf, W, H);
    unsigned char g[APB_FONT_ROWS];
    int gw = apb_font_glyph('R', g);
    for (int up = 0; up < 2; up++) {
        memset(buf, 255, sizeof buf);
        if (up)
            apb_font_draw_up(&c, 5, 7, "R", 0x102030, 2);
        else
            apb_font_draw(&c, 5, 7, "R", 0x102030, 2);
        int mismatches = 0, ink = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int want = 0;
                /* Text-space font pixel (u, v) for this canvas pixel. */
                int u, v;
                if (up) {
                    u = (7 + gw * 2 - 1 - y) / 2;
                    v = (x - 5) / 2;
                    if (y > 7 + gw * 2 - 1 || x < 5)
                        u = -1;
                } else {
                    u = x < 5 ? -1 : (x - 5) / 2;
                    v = y < 7 ? -1 : (y - 7) / 2;
                }
                if (u >= 0 && u < gw && v >= 0 && v < APB_FONT_ROWS)
                    want = g[v] >> u & 1;
                int got = pixel(buf, W, x, y) == 0x102030;
                ink += got;
                mismatches += got != want;
                if (!got && pixel(buf, W, x, y) != 0xFFFFFF)
                    mismatches++;
            }
        CHECK_MSG(mismatches == 0 && ink > 0, "up=%d: %d mismatching pixels, %d inked", up,
                  mismatches, ink);
    }
    /* Clipping: nothing lands outside the clip rectangle. */
    memset(buf, 255, sizeof buf);
    apb_canvas_clip(&c, 0, 0, 10, H);
    apb_font_draw(&c, 5, 7, "MMMM", 0, 2);
    int outside = 0;
    for (int y = 0; y < H; y++)
        for (int x = 10; x < W; x++)
            outside += pixel(buf, W, x, y) != 0xFFFFFF;
    CHECK(outside == 0);
    return 0;
}

/* Data outside an explicit range is clipped at the frame, even absurdly far out. */
APB_TEST(test_plot_clip_outside_range)
{
    const double x[] = {0.5, 5.0, 1e300, 0.25}, y[] = {0.5, 0.5, -1e300, 0.75};
    apb_plot_series s = {.label = "out", .n = 4, .x = x, .y = y, .color = 0x00A000, .connect = 1};
    apb_plot_opts o = {.width = 400, .height = 300, .xmin = 0, .xmax = 1, .ymin = 0, .ymax = 1};
    apb_plot_frame f;
    CHECK_OK(apb_plot_layout(&o, &s, 1, &f));
    unsigned char *rgb = malloc(400 * 300 * 3);
    CHECK(rgb != NULL);
    apb_status st = apb_plot_render(&o, &s, 1, rgb);
    double px, py;
    apb_plot_map(&f, 0.9, 0.5, &px, &py);
    int inside = color_near(rgb, 400, 300, px, py, 1, 0x00A000);
    int outside = 0;
    for (int x = f.right + 1; x < 400; x++)
        outside += color_dist(pixel(rgb, 400, x, (int)lround(py)), 0x00A000) < 200;
    free(rgb);
    CHECK_OK(st);
    CHECK_MSG(inside, "line towards x = 5 missing inside the frame");
    CHECK_MSG(outside == 0, "%d line pixels right of the frame", outside);
    return 0;
}

/* The six marker shapes are told apart: the inked patch around each differs
 * (identical shapes give 0; circle vs diamond, the closest pair, gives 12). */
APB_TEST(test_plot_markers_distinct)
{
    enum { R = 9, P = 2 * R + 1 };
    double xs[APB_MARKER_COUNT], ys[APB_MARKER_COUNT];
    apb_plot_series s[APB_MARKER_COUNT];
    for (int m = 0; m < APB_MARKER_COUNT; m++) {
        xs[m] = m;
        ys[m] = 0.5;
        s[m] = (apb_plot_series){.n = 1, .x = &xs[m], .y = &ys[m], .marker = m, .color = 0x000080};
    }
    apb_plot_opts o = {.width = 600, .height = 200, .xmin = -0.5, .xmax = 5.5, .ymin = 0, .ymax = 1};
    apb_plot_frame f;
    CHECK_OK(apb_plot_layout(&o, s, APB_MARKER_COUNT, &f));
    /* Put every centre on a pixel centre so identical shapes would give
     * identical patches (the layout does not depend on x with a fixed range). */
    for (int m = 0; m < APB_MARKER_COUNT; m++) {
        double px = f.left + 40 + 80 * m, py = round(0.5 * (f.top + f.bottom));
        xs[m] = f.xmin + (px - f.left) / (f.right - f.left) * (f.xmax - f.xmin);
        ys[m] = f.ymin + (f.bottom - py) / (f.bottom - f.top) * (f.ymax - f.ymin);
    }
    unsigned char *rgb = malloc(600 * 200 * 3);
    CHECK(rgb != NULL);
    apb_status st = apb_plot_render(&o, s, APB_MARKER_COUNT, rgb);
    static unsigned char patch[APB_MARKER_COUNT][P * P];
    int ink[APB_MARKER_COUNT] = {0};
    for (int m = 0; m < APB_MARKER_COUNT && st == APB_OK; m++) {
        double px, py;
        apb_plot_map(&f, xs[m], ys[m], &px, &py);
        for (int dy = -R; dy <= R; dy++)
            for (int dx = -R; dx <= R; dx++) {
                unsigned c = pixel(rgb, 600, (int)lround(px) + dx, (int)lround(py) + dy);
                unsigned char on = color_dist(c, 0x000080) < 120;
                patch[m][(dy + R) * P + dx + R] = on;
                ink[m] += on;
            }
    }
    free(rgb);
    CHECK_OK(st);
    for (int a = 0; a < APB_MARKER_COUNT; a++) {
        CHECK_MSG(ink[a] >= 30 && ink[a] < P * P / 2, "marker %d has %d ink pixels", a, ink[a]);
        for (int b = a + 1; b < APB_MARKER_COUNT; b++) {
            int diff = 0;
            for (int i = 0; i < P * P; i++)
                diff += patch[a][i] != patch[b][i];
            CHECK_MSG(diff >= 8, "markers %d and %d differ in only %d pixels", a, b, diff);
        }
    }
    return 0;
}

/* Error bars: drawn in the series colour from y - e to y + e, inside the y
 * range the layout makes room for; a negative or NaN bar is an error. */
APB_TEST(test_plot_error_bars)
{
    static const double x[] = {1.0, 2.0}, y[] = {0.5, 0.6}, e[] = {0.2, 0.0};
    apb_plot_series s = {.label = "APB", .n = 2, .x = x, .y = y, .color = 0x1060C0, .yerr = e};
    apb_plot_opts o = {.title = "bars", .width = 400, .height = 300};
    char path[600];
    snprintf(path, sizeof path, "%s/bars.png", apb_test_tmpdir());
    CHECK_OK(apb_plot_png(path, &o, &s, 1));
    apb_plot_frame f;
    CHECK_OK(apb_plot_layout(&o, &s, 1, &f));
    CHECK_MSG(f.ymin <= 0.3 && f.ymax >= 0.7, "y range %g..%g leaves the bar out", f.ymin, f.ymax);
    int w, h;
    unsigned char *img = read_png(path, &w, &h);
    CHECK(img != NULL);
    double px, top, bot, unused, mid;
    apb_plot_map(&f, 1.0, 0.7, &px, &top);
    apb_plot_map(&f, 1.0, 0.3, &unused, &bot);
    apb_plot_map(&f, 1.0, 0.6, &unused, &mid); /* on the bar, away from the marker */
    int ok = color_near(img, w, h, px, top, 1, 0x1060C0) && color_near(img, w, h, px, bot, 1, 0x1060C0) &&
             color_near(img, w, h, px, mid, 1, 0x1060C0);
    /* no bar above the second point (e = 0) */
    double qx, qy;
    apb_plot_map(&f, 2.0, 0.68, &qx, &qy);
    int clear = !color_near(img, w, h, qx, qy, 1, 0x1060C0);
    free(img);
    CHECK_MSG(ok, "error bar of point 0 not drawn from %.1f to %.1f at x %.1f", top, bot, px);
    CHECK(clear);
    static const double bad[] = {-0.1, 0.0};
    s.yerr = bad;
    CHECK(apb_plot_png(path, &o, &s, 1) == APB_ENUMERIC);
    return 0;
}
