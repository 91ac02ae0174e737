// libjpeg-turbo's TurboJPEG API: errors are return codes (no setjmp).
#include <turbojpeg.h>
