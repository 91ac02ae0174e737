// model.weights.h5 through the HDF5 C library — the only file that imports
// CHDF5. Files are opened from and written to memory (the core driver), so
// an archive member never becomes a path on disk. Reading follows hard links
// only, refuses external storage and virtual datasets, and checks every
// shape and size before anything is allocated (docs/SPEC.md §12).

import CHDF5
import Foundation
import TandemCore

/// A name for an in-memory file. It must exist nowhere on disk (HDF5 1.10 opened a
/// file of the given name in the working directory instead of the image, measured)
/// and differ between open files (HDF5 refuses a second file of an open one's name).
private func memoryImageName() -> String { "/nonexistent/tandem-memory-image-\(UUID().uuidString).h5" }

/// A read-only HDF5 file image.
final class HDF5Reader {
    private let file: hid_t
    package let source: String
    private var image: [UInt8]

    /// Opens `bytes` (a whole .h5 file); `source` names it in errors.
    init(bytes: [UInt8], source: String) throws {
        tandem_h5_quiet()
        self.source = source
        image = bytes
        guard bytes.count >= 8, bytes.starts(with: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw TandemError.file(source, "not an HDF5 file (no HDF5 signature)")
        }
        let fapl = H5Pcreate(tandem_h5p_file_access())
        defer { H5Pclose(fapl) }
        H5Pset_fapl_core(fapl, 1 << 20, false)
        let ok = image.withUnsafeMutableBytes { H5Pset_file_image(fapl, $0.baseAddress, $0.count) }
        guard ok >= 0 else { throw TandemError.file(source, "HDF5 could not take the file image") }
        file = H5Fopen(memoryImageName(), tandem_h5f_acc_rdonly(), fapl)
        guard file >= 0 else { throw TandemError.file(source, "not a readable HDF5 file (corrupt or truncated)") }
        image = []  // HDF5 copied it
    }

    deinit { H5Fclose(file) }

    /// True when every component of `path` is a hard link (no soft or external links followed).
    func exists(_ path: String) throws -> Bool {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/\(part)"
            let type = tandem_h5_link_type(file, prefix)
            if type < 0 { return false }
            guard type == Int32(H5L_TYPE_HARD.rawValue) else {
                throw TandemError.file(
                    source,
                    "'\(prefix)' is \(type == Int32(H5L_TYPE_SOFT.rawValue) ? "a soft" : "an external") link; links are never followed"
                )
            }
        }
        return true
    }

    /// Links directly under a group (its datasets and sub-groups), or nil when it is absent.
    func childCount(_ path: String) throws -> Int? {
        guard try exists(path) else { return nil }
        let g = H5Gopen2(file, path, tandem_h5_default())
        guard g >= 0 else { throw TandemError.file(source, "'\(path)' is not a group") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw TandemError.file(source, "'\(path)': unreadable group") }
        return Int(info.nlinks)
    }

    /// The shape of the dataset at `path` (checked: hard links, contiguous or chunked local storage).
    func shape(_ path: String) throws -> [Int] {
        try withDataset(path) { d in try dims(d, path) }
    }

    /// Reads the float dataset at `path`, which must have `shape`, into `out`.
    func readFloats(_ path: String, shape expected: [Int], into out: UnsafeMutablePointer<Float>) throws {
        try withDataset(path) { d in
            let found = try dims(d, path)
            guard found == expected else {
                throw TandemError.file(source, "'\(path)' has shape \(found), the model needs \(expected)")
            }
            let type = H5Dget_type(d)
            defer { H5Tclose(type) }
            // Integers too: a Normalization's `count` is Keras's one integer layer variable (read as float).
            guard H5Tget_class(type) == H5T_FLOAT || H5Tget_class(type) == H5T_INTEGER else {
                throw TandemError.file(source, "'\(path)' is not a number")
            }
            // The buffer is sized from the model's shape, which the file's matches: nothing here
            // is sized from the file.
            guard expected.reduce(1, *) > 0 else { return }
            guard
                H5Dread(d, tandem_h5_native_float(), tandem_h5s_all(), tandem_h5s_all(), tandem_h5_default(), out) >= 0
            else {
                throw TandemError.file(source, "'\(path)': the data could not be read (corrupt)")
            }
        }
    }

    /// Reads an integer scalar (the optimizer's `iterations`).
    func readInteger(_ path: String) throws -> Int64 {
        try withDataset(path) { d in
            guard try dims(d, path).reduce(1, *) == 1 else {
                throw TandemError.file(source, "'\(path)' is not a scalar")
            }
            var v: Int64 = 0
            guard H5Dread(d, tandem_h5_native_int64(), tandem_h5s_all(), tandem_h5s_all(), tandem_h5_default(), &v) >= 0
            else {
                throw TandemError.file(source, "'\(path)': the value could not be read")
            }
            return v
        }
    }

    private func withDataset<T>(_ path: String, _ body: (hid_t) throws -> T) throws -> T {
        guard try exists(path) else { throw TandemError.file(source, "'\(path)' is missing") }
        var info = H5O_info_t()
        guard H5Oget_info_by_name(file, path, &info, tandem_h5_default()) >= 0, info.type == H5O_TYPE_DATASET else {
            throw TandemError.file(source, "'\(path)' is not a dataset")
        }
        let d = H5Dopen2(file, path, tandem_h5_default())
        guard d >= 0 else { throw TandemError.file(source, "'\(path)' could not be opened") }
        defer { H5Dclose(d) }
        let plist = H5Dget_create_plist(d)
        defer { H5Pclose(plist) }
        if H5Pget_external_count(plist) > 0 {
            throw TandemError.file(source, "'\(path)' uses external storage, which is never followed")
        }
        let layout = H5Pget_layout(plist)
        guard layout == H5D_CONTIGUOUS || layout == H5D_CHUNKED || layout == H5D_COMPACT else {
            throw TandemError.file(
                source, "'\(path)' is a virtual dataset or has an unknown layout; only plain datasets are read")
        }
        return try body(d)
    }

    private func dims(_ d: hid_t, _ path: String) throws -> [Int] {
        let space = H5Dget_space(d)
        guard space >= 0 else { throw TandemError.file(source, "'\(path)': unreadable dataspace") }
        defer { H5Sclose(space) }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0 && rank <= 8 else { throw TandemError.file(source, "'\(path)': rank \(rank) is not supported") }
        var dims = [hsize_t](repeating: 0, count: Int(max(rank, 1)))
        guard H5Sget_simple_extent_dims(space, &dims, nil) >= 0 else {
            throw TandemError.file(source, "'\(path)': unreadable shape")
        }
        let shape = dims.prefix(Int(rank)).map { Int(clamping: $0) }
        guard checkedProduct(shape).map({ $0 <= 1 << 34 }) ?? false else {
            throw TandemError.file(source, "'\(path)': shape \(shape) is too large")
        }
        return shape
    }
}

/// Builds an HDF5 file in memory and returns its bytes.
final class HDF5Writer {
    private let file: hid_t

    init() throws {
        tandem_h5_quiet()
        let fapl = H5Pcreate(tandem_h5p_file_access())
        defer { H5Pclose(fapl) }
        H5Pset_fapl_core(fapl, 1 << 20, false)  // in memory, no backing file
        file = H5Fcreate(memoryImageName(), tandem_h5f_acc_trunc(), tandem_h5_default(), fapl)
        guard file >= 0 else { throw TandemError.training("HDF5 could not create a file in memory") }
    }

    deinit { H5Fclose(file) }

    /// Creates the group at `path` (and its parents); `name` becomes its `name` attribute, as Keras writes.
    func group(_ path: String, name: String? = nil) throws {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/\(part)"
            if tandem_h5_link_type(file, prefix) >= 0 { continue }
            let g = H5Gcreate2(file, prefix, tandem_h5_default(), tandem_h5_default(), tandem_h5_default())
            guard g >= 0 else { throw TandemError.training("HDF5: cannot create group '\(prefix)'") }
            if prefix == path, let name { try attribute(g, "name", name) }
            H5Gclose(g)
        }
    }

    private func attribute(_ object: hid_t, _ key: String, _ value: String) throws {
        let type = H5Tcopy(tandem_h5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, max(value.utf8.count, 1))
        H5Tset_strpad(type, H5T_STR_NULLPAD)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate2(object, key, type, space, tandem_h5_default(), tandem_h5_default())
        guard a >= 0 else { throw TandemError.training("HDF5: cannot create attribute '\(key)'") }
        defer { H5Aclose(a) }
        var bytes = Array(value.utf8)
        if bytes.isEmpty { bytes = [0] }
        guard H5Awrite(a, type, bytes) >= 0 else { throw TandemError.training("HDF5: cannot write attribute '\(key)'") }
    }

    /// A float32 dataset at `path` (shape [] for a scalar).
    func floats(_ path: String, shape: [Int], values: UnsafePointer<Float>) throws {
        try dataset(
            path, shape: shape, fileType: tandem_h5_ieee_f32le(), memoryType: tandem_h5_native_float(),
            values: UnsafeRawPointer(values))
    }

    /// An int64 scalar at `path`.
    func integer(_ path: String, _ value: Int64) throws {
        var v = value
        try dataset(path, shape: [], fileType: tandem_h5_std_i64le(), memoryType: tandem_h5_native_int64(), values: &v)
    }

    private func dataset(_ path: String, shape: [Int], fileType: hid_t, memoryType: hid_t, values: UnsafeRawPointer)
        throws
    {
        if let slash = path.lastIndex(of: "/") { try group(String(path[..<slash])) }
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        defer { H5Sclose(space) }
        let d = H5Dcreate2(file, path, fileType, space, tandem_h5_default(), tandem_h5_default(), tandem_h5_default())
        guard d >= 0 else { throw TandemError.training("HDF5: cannot create dataset '\(path)'") }
        defer { H5Dclose(d) }
        guard H5Dwrite(d, memoryType, tandem_h5s_all(), tandem_h5s_all(), tandem_h5_default(), values) >= 0 else {
            throw TandemError.training("HDF5: cannot write dataset '\(path)'")
        }
    }

    /// The finished file's bytes.
    func bytes() throws -> [UInt8] {
        H5Fflush(file, H5F_SCOPE_GLOBAL)
        let size = H5Fget_file_image(file, nil, 0)
        guard size > 0 else { throw TandemError.training("HDF5: cannot read back the file image") }
        var out = [UInt8](repeating: 0, count: size)
        let got = out.withUnsafeMutableBytes { H5Fget_file_image(file, $0.baseAddress, size) }
        guard got == size else { throw TandemError.training("HDF5: cannot read back the file image") }
        return out
    }
}
