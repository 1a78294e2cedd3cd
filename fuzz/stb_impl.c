/* stb_impl.c - stb_image's decoders, compiled from Debian's libstb-dev header
 * into the fuzz build only (fuzz/run.sh), instrumented like apb's own code: the
 * fuzzer then sees coverage inside the JPEG decoder and ASan checks its memory
 * accesses, which the uninstrumented libstb.so behind the apb command hides.
 * The archive's definitions come before -lstb on the link line, so they win. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
