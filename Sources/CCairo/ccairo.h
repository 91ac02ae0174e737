// cairo (Debian libcairo2-dev) for Swift: drawing and PNG output for `tandem plot`.
#ifndef TANDEM_CCAIRO_H
#define TANDEM_CCAIRO_H
#include <cairo.h>
#endif
