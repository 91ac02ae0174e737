// Swift cannot import OpenMPI's handle macros (they are casts of global
// addresses), so each handle is returned by a tiny inline function.
#ifndef TANDEM_CMPI_H
#define TANDEM_CMPI_H
#include <mpi.h>
#include <stdio.h>

static inline MPI_Comm tandem_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype tandem_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype tandem_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype tandem_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype tandem_mpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Op tandem_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op tandem_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op tandem_mpi_max(void) { return MPI_MAX; }
static inline void *tandem_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler tandem_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

/// Line-buffer stderr/stdout so progress from rank 0 reaches mpirun promptly.
static inline void tandem_line_buffer_stdio(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
}
#endif
