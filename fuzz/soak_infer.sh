#!/bin/sh
# soak_infer.sh [DIR] - apb infer over N test images (default 10,000) of which
# BAD (default 100, 1%) are corrupt: every good image must be classified, every
# bad one reported by path, and the peak memory (max RSS, /usr/bin/time -v) must
# not grow with the number of images (a run over the first tenth is measured
# too). Trains a small convnet first (1 epoch on 10,000 Fashion-MNIST images).
# Every tenth good image is converted to JPEG, so both decoders run.
# Environment: APB (default build/apb), N, BAD. docs/RELIABILITY.md has figures.
set -e
APB=${APB:-build/apb}
DIR=${1:-/tmp/apb-soak}
N=${N:-10000}
BAD=${BAD:-100}
rm -rf "$DIR"
mkdir -p "$DIR"

"$APB" train --data fashion-mnist --model convnet --epochs 1 --limit-train 10000 --limit-test 1000 \
    --quiet --force --out "$DIR/run"
"$APB" export --ckpt "$DIR/run/last.ckpt" --out "$DIR/model.apb" > /dev/null
"$APB" data fashion-mnist --split test --dump "$N" "$DIR/img" > /dev/null

# PNG -> JPEG (quality 90) with libpng and libjpeg: a small helper, built here
cat > "$DIR/tojpg.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <png.h>
int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        unsigned char *px = NULL;
        FILE *out = NULL;
        int comps = 3;
        if (png_image_begin_read_from_file(&img, argv[i])) {
            comps = img.format & PNG_FORMAT_FLAG_COLOR ? 3 : 1; /* gray stays gray */
            img.format = comps == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
            px = malloc(PNG_IMAGE_SIZE(img));
        }
        if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL) ||
            !(out = fopen(argv[i + 1], "wb"))) {
            fprintf(stderr, "tojpg: %s: %s\n", argv[i], img.message);
            return 1;
        }
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr err;
        c.err = jpeg_std_error(&err); /* prints and exits on error */
        jpeg_create_compress(&c);
        jpeg_stdio_dest(&c, out);
        c.image_width = img.width, c.image_height = img.height;
        c.input_components = comps, c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, 90, TRUE);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < c.image_height) {
            JSAMPROW r = px + (size_t)c.next_scanline * img.width * comps;
            jpeg_write_scanlines(&c, &r, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        if (fclose(out) != 0) {
            fprintf(stderr, "tojpg: cannot write %s\n", argv[i + 1]);
            return 1;
        }
        free(px);
    }
    return 0;
}
EOF
${CC:-cc} -O1 "$DIR/tojpg.c" -lpng -ljpeg -lm -o "$DIR/tojpg"
ls "$DIR/img" | awk 'NR % 10 == 5' | sed 's/\.png$//' |
    while read -r f; do echo "$DIR/img/$f.png $DIR/img/$f.jpg"; done | xargs "$DIR/tojpg"
for f in $(ls "$DIR/img" | grep '\.jpg$'); do rm "$DIR/img/${f%.jpg}.png"; done

# corrupt BAD files, spread evenly, eleven kinds of damage
ls "$DIR/img" | sort > "$DIR/all.txt"
STEP=$((N / BAD))
: > "$DIR/bad.txt"
i=0
for f in $(awk -v s="$STEP" 'NR % s == 7' "$DIR/all.txt"); do
    p="$DIR/img/$f"
    case $((i % 11)) in
    0) head -c "$(($(wc -c < "$p") / 2))" "$p" > "$p.cut" && mv "$p.cut" "$p" ;;   # cut in half
    1) head -c 20 "$p" > "$p.cut" && mv "$p.cut" "$p" ;;                           # header only
    2) : > "$p" ;;                                                                   # empty
    3) echo "not an image" > "$p" ;;                                                 # text
    4) printf '\211PNG\r\n\032\n\000\000\000\rIHDR\000\000\352\140\000\000\352\140\010\002\000\000\000\017\260\342\025\000\000\000\000IDAT\065\257\006\036' > "$p" ;;  # 60000x60000
    5) printf '\377\330\377\300\000\021\010' > "$p"; head -c 300 /dev/zero | tr '\0' '\377' >> "$p" ;; # broken JPEG
    6) printf '\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377' |
           dd of="$p" bs=1 seek=41 conv=notrunc 2> /dev/null ;;                     # damaged first chunk
    7) rm "$p" && mkdir "$p" ;;                                                      # a directory
    8) printf 'X' | dd of="$p" bs=1 seek=1 conv=notrunc 2> /dev/null ;;             # wrong magic
    9) head -c 64 /dev/zero > "$p" ;;                                                # zeros
    10) head -c 300 "$(ls "$DIR"/img/*.jpg | head -1)" > "$p" ;;                    # JPEG cut short
    esac
    echo "$p" >> "$DIR/bad.txt"
    i=$((i + 1))
done
sed "s|^|$DIR/img/|" "$DIR/all.txt" > "$DIR/list.txt"
head -n $((N / 10)) "$DIR/list.txt" > "$DIR/list-tenth.txt"

run() { # LIST NAME
    /usr/bin/time -v "$APB" infer "$DIR/model.apb" --list "$1" --batch 16 --threads 1 \
        > "$DIR/$2.out" 2> "$DIR/$2.err" || true
    rss=$(grep "Maximum resident" "$DIR/$2.err" | awk '{print $NF}')
    secs=$(grep "Elapsed (wall" "$DIR/$2.err" | awk '{print $NF}')
    images=$(grep -c '^/.*:$' "$DIR/$2.out" || true)
    reported=$(grep -c '^apb infer: /' "$DIR/$2.err" || true)
    echo "$2: $(wc -l < "$1") files, classified $images, reported $reported, max RSS $rss KiB, wall $secs"
}
run "$DIR/list-tenth.txt" tenth
run "$DIR/list.txt" all
# every bad file reported, no good one; every good one classified
grep '^apb infer: /' "$DIR/all.err" | sed 's/^apb infer: \([^:]*\):.*/\1/' | sort > "$DIR/reported.txt"
sort "$DIR/bad.txt" > "$DIR/bad.sorted"
grep '^/.*:$' "$DIR/all.out" | sed 's/:$//' | sort > "$DIR/classified.txt"
sort "$DIR/list.txt" | comm -23 - "$DIR/bad.sorted" > "$DIR/good.sorted"
if cmp -s "$DIR/reported.txt" "$DIR/bad.sorted" && cmp -s "$DIR/classified.txt" "$DIR/good.sorted"; then
    echo "soak: all $(wc -l < "$DIR/good.sorted") good images classified, all $(wc -l < "$DIR/bad.sorted") bad ones reported"
else
    echo "soak: MISMATCH (see $DIR/reported.txt vs bad.sorted, classified.txt vs good.sorted)"
    exit 1
fi
grep '^apb infer: /' "$DIR/all.err" | sed 's/^apb infer: [^:]*: //' | sed 's/[0-9][0-9]*/N/g' |
    sort | uniq -c | sort -rn
