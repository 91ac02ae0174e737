// libcsv (Debian libcsv-dev) for Swift: a streaming RFC 4180 parser (quotes, embedded
// delimiters and newlines), fed a file in blocks, so a CSV is never held in memory.
#ifndef TANDEM_CCSV_H
#define TANDEM_CCSV_H
#include <stddef.h>
#include <csv.h>
#endif
