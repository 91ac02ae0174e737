// A read-only memory map of a whole file, and an atomic file writer
// (temporary file in the same folder, fsync, rename, fsync the folder), so a
// crash leaves the old file or the new one, never a damaged one.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A file mapped read-only into memory. Pages are read only when touched,
/// so a rank that reads only its rows touches only those pages.
package final class MappedFile: @unchecked Sendable {
    package let path: String
    package let bytes: UnsafeRawPointer
    package let size: Int

    package init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let reason = errno == ENOENT ? "file not found" : String(cString: strerror(errno))
            throw TandemError.file(path, reason)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw TandemError.file(path, String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw TandemError.file(path, "not a regular file") }
        size = Int(info.st_size)
        guard size > 0 else { throw TandemError.file(path, "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw TandemError.file(path, "cannot map: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: bytes), size) }
}

/// Writes a file under a temporary name and renames it into place on `commit`.
/// Dropped without commit (an error on the way), it removes the temporary file.
package final class AtomicFileWriter {
    package let path: String
    private let temporaryPath: String
    private var fd: Int32
    private var committed = false

    package init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        temporaryPath =
            url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
        fd = open(temporaryPath, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        guard fd >= 0 else { throw TandemError.file(path, "cannot create: \(String(cString: strerror(errno)))") }
    }

    deinit {
        if !committed {
            if fd >= 0 { close(fd) }
            unlink(temporaryPath)
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw TandemError.file(path, "write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// fsync, rename over `path`, fsync the folder.
    package func commit() throws {
        guard fsync(fd) == 0 else { throw TandemError.file(path, "fsync failed: \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            throw TandemError.file(path, "rename failed: \(String(cString: strerror(errno)))")
        }
        committed = true
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let dfd = open(folder, O_RDONLY)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        let writer = try AtomicFileWriter(path: path)
        try writer.write(data)
        try writer.commit()
    }
}

/// Creates `path` (and its parents) as a directory, or says clearly why not.
public func makeDirectory(_ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else { throw TandemError.file(path, "exists and is not a directory") }
        guard access(path, W_OK) == 0 else { throw TandemError.file(path, "directory is not writable") }
        return
    }
    // mkdir -p by hand, so the failure carries the system's reason.
    var prefix = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        prefix += "/" + part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
            throw TandemError.file(path, "cannot create the directory (\(String(cString: strerror(errno))))")
        }
    }
    var check: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &check), check.boolValue else {
        throw TandemError.file(path, "cannot create the directory (\(String(cString: strerror(ENOTDIR))))")
    }
}
