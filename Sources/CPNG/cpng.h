// libpng's simplified API (png_image): reads and writes 8-bit images without setjmp.
#include <png.h>
