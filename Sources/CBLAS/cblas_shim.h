// OpenBLAS's CBLAS interface plus its thread-count control.
#ifndef TANDEM_CBLAS_SHIM_H
#define TANDEM_CBLAS_SHIM_H
#include <cblas.h>
#endif
