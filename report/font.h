/* font.h - the project's own bitmap font and the RGB canvas it draws on.
 *
 * Used by the plotting library (plot.h) for titles, axis labels, tick labels and
 * legends. The glyphs were designed for this project: 5 columns x 9 rows per
 * printable ASCII character (32..126), 7 rows above the baseline and 2 rows of
 * descender, drawn at an integer scale factor (2 is the readable default).
 * Text is proportional: each glyph is as wide as its inked columns (digits are
 * always 5 wide, so numbers line up), plus one blank column of spacing.
 */
#ifndef APB_FONT_H
#define APB_FONT_H

#define APB_FONT_COLS 5   /* glyph cell width in font pixels */
#define APB_FONT_ROWS 9   /* glyph cell height: 7 above the baseline + 2 descender */
#define APB_FONT_ASCENT 7 /* rows above the baseline (cap height) */

/* An 8-bit RGB image with a clip rectangle; drawing outside the clip is dropped. */
typedef struct {
    unsigned char *rgb;       /* [h][w][3] */
    int w, h;
    int cx0, cy0, cx1, cy1;   /* clip: cx0 <= x < cx1, cy0 <= y < cy1 */
} apb_canvas;

/* Wraps a caller-owned buffer; the clip is the whole image. */
void apb_canvas_init(apb_canvas *c, unsigned char *rgb, int w, int h);
void apb_canvas_clip(apb_canvas *c, int x0, int y0, int x1, int y1);
void apb_canvas_reset_clip(apb_canvas *c);
/* Blends colour 0xRRGGBB over pixel (x, y) with coverage a in [0, 1]. */
void apb_canvas_blend(apb_canvas *c, int x, int y, unsigned color, float a);

/* The glyph drawn for `ch` (characters outside 32..126 are drawn as '?'), with
 * blank columns on the left trimmed: rows[r] bit c (c = 0 leftmost) is set when
 * font pixel (c, r) is inked. Returns the glyph width in font pixels (the space
 * is 3 wide and has no ink). */
int apb_font_glyph(int ch, unsigned char rows[APB_FONT_ROWS]);

/* Width in screen pixels of `s` drawn at `scale` (no trailing spacing column). */
int apb_font_text_width(const char *s, int scale);
/* Height of a line of text at `scale` (ascent + descender), in screen pixels. */
int apb_font_text_height(int scale);

/* Draws `s` left to right with the top-left of its line box at (x, y). */
void apb_font_draw(apb_canvas *c, int x, int y, const char *s, unsigned color, int scale);
/* Draws `s` rotated 90 degrees counter-clockwise (reading bottom to top), for a
 * y-axis label. The rotated box (text height wide, text width tall) has its
 * top-left at (x, y). */
void apb_font_draw_up(apb_canvas *c, int x, int y, const char *s, unsigned color, int scale);

#endif
