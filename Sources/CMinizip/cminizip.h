// zlib's minizip (Debian libminizip-dev) for Swift: reads and writes .npz archives. Unlike
// ZIPFoundation it tells where a stored member's bytes start (unzGetCurrentFileZStreamPos64),
// so a dataset's arrays are memory-mapped in place.
#ifndef TANDEM_CMINIZIP_H
#define TANDEM_CMINIZIP_H
#include <unzip.h>
#include <zip.h>
#endif
