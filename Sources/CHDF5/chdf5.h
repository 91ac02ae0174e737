// The HDF5 C library (Debian libhdf5-dev) for Swift. HDF5's type and property
// "constants" are macros over globals that Swift cannot import; these
// functions return them. Everything else is called directly.
#ifndef TANDEM_CHDF5_H
#define TANDEM_CHDF5_H
#include <hdf5.h>

static inline hid_t tandem_h5_default(void) { return H5P_DEFAULT; }
static inline hid_t tandem_h5s_all(void) { return H5S_ALL; }
static inline hid_t tandem_h5_native_float(void) { H5open(); return H5T_NATIVE_FLOAT; }
static inline hid_t tandem_h5_native_int64(void) { H5open(); return H5T_NATIVE_INT64; }
static inline hid_t tandem_h5_ieee_f32le(void) { H5open(); return H5T_IEEE_F32LE; }
static inline hid_t tandem_h5_std_i64le(void) { H5open(); return H5T_STD_I64LE; }
static inline hid_t tandem_h5_c_s1(void) { H5open(); return H5T_C_S1; }
static inline hid_t tandem_h5p_file_access(void) { H5open(); return H5P_FILE_ACCESS; }
static inline hid_t tandem_h5p_dataset_create(void) { H5open(); return H5P_DATASET_CREATE; }
static inline unsigned tandem_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned tandem_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
/// Silences HDF5's own error stack printing (Tandem reports errors itself).
static inline void tandem_h5_quiet(void) { H5open(); H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
/// The link type of `name` under `location`: H5L_TYPE_HARD, _SOFT, _EXTERNAL, or -1 when absent.
static inline int tandem_h5_link_type(hid_t location, const char *name) {
    if (H5Lexists(location, name, H5P_DEFAULT) <= 0) return -1;
    H5L_info_t info;
    if (H5Lget_info(location, name, &info, H5P_DEFAULT) < 0) return -1;
    return (int)info.type;
}
#endif
