// NumPy .npz archives (what np.savez and np.savez_compressed write): a zip of `<name>.npy`
// members. Read through minizip: a stored member (np.savez's) is memory-mapped where it lies in
// the archive, so a rank touches only the pages of its rows; a deflated member
// (np.savez_compressed's) is inflated into memory once, its CRC checked. Written with stored
// members (`tandem gen-data --format npz`).

import CMinizip
import Foundation
import TandemCore

/// An .npz archive opened for reading: its members' places, and the file mapped once.
package final class NPZArchive: @unchecked Sendable {
    package let path: String
    private let file: MappedFile
    private enum Member {
        case stored(offset: Int, size: Int)
        case deflated(size: Int)
    }
    /// Per member name, without ".npy".
    private var members: [String: Member] = [:]
    /// The member names (without ".npy"), sorted.
    package var names: [String] { members.keys.sorted() }

    package init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        guard let zip = unzOpen64(path) else {
            throw TandemError.file(path, "not a zip archive (an .npz is what np.savez writes)")
        }
        defer { unzClose(zip) }
        var status = unzGoToFirstFile(zip)
        var name = [CChar](repeating: 0, count: 4097)
        while status == UNZ_OK {
            var info = unz_file_info64()
            guard unzGetCurrentFileInfo64(zip, &info, &name, 4096, nil, 0, nil, 0) == UNZ_OK else {
                throw TandemError.file(path, "damaged zip directory")
            }
            let member = String(cString: name)
            if member.hasSuffix(".npy") {  // np.savez writes only .npy members
                members[String(member.dropLast(4))] = try place(zip, member, info)
            }
            status = unzGoToNextFile(zip)
        }
        guard status == UNZ_END_OF_LIST_OF_FILE else { throw TandemError.file(path, "damaged zip directory") }
    }

    /// Where the current member's bytes are.
    private func place(_ zip: unzFile, _ member: String, _ info: unz_file_info64) throws -> Member {
        let size = Int(info.uncompressed_size)
        switch info.compression_method {
        case 0:
            guard unzOpenCurrentFile(zip) == UNZ_OK else {
                throw TandemError.file(path, "member '\(member)' cannot be opened")
            }
            let offset = Int(unzGetCurrentFileZStreamPos64(zip))
            unzCloseCurrentFile(zip)
            guard offset > 0, offset + size <= file.size else {
                throw TandemError.file(path, "member '\(member)' is truncated")
            }
            return .stored(offset: offset, size: size)
        case 8: return .deflated(size: size)
        default:
            throw TandemError.file(
                path,
                "member '\(member)' uses zip compression method \(info.compression_method); np.savez (stored) and np.savez_compressed (deflate) are read"
            )
        }
    }

    /// How errors name member `name`.
    package func label(_ name: String) -> String { "\(path)[\(name).npy]" }

    /// The array stored as `<name>.npy`, or nil when the archive has no such member.
    package func array(_ name: String) throws -> NPYArray? {
        switch members[name] {
        case nil: return nil
        case .stored(let offset, let size):
            return try NPYArray(bytes: file.bytes + offset, size: size, path: label(name), storage: file)
        case .deflated(let size):
            let buffer = InflatedMember(size: size)
            guard let zip = unzOpen64(path) else { throw TandemError.file(path, "cannot reopen the archive") }
            defer { unzClose(zip) }
            guard unzLocateFile(zip, name + ".npy", 1) == UNZ_OK, unzOpenCurrentFile(zip) == UNZ_OK else {
                throw TandemError.file(label(name), "cannot open the member")
            }
            var done = 0
            while done < size {
                let n = unzReadCurrentFile(zip, buffer.bytes + done, UInt32(min(size - done, 1 << 30)))
                guard n > 0 else { break }
                done += Int(n)
            }
            // Closing checks the CRC of everything read.
            let closed = unzCloseCurrentFile(zip)
            guard done == size else {
                throw TandemError.file(label(name), "truncated: inflated \(done) of \(size) bytes")
            }
            guard closed == UNZ_OK else { throw TandemError.file(label(name), "damaged (CRC mismatch)") }
            return try NPYArray(bytes: buffer.bytes, size: size, path: label(name), storage: buffer)
        }
    }

    /// Writes `members` (name → a .npy file's path) into a new .npz at `path` as np.savez does
    /// (stored, zip64 when large), under a temporary name renamed into place at the end.
    package static func write(members: [(name: String, npy: String)], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        guard let zip = zipOpen64(temporary, APPEND_STATUS_CREATE) else {
            throw TandemError.file(path, "cannot create")
        }
        var closed = false
        defer {
            if !closed { zipClose(zip, nil) }
            unlink(temporary)
        }
        for (name, npy) in members {
            let data = try MappedFile(path: npy)
            var info = zip_fileinfo()
            let large: Int32 = data.size >= 0xFFFF_FFFF ? 1 : 0
            guard zipOpenNewFileInZip64(zip, name + ".npy", &info, nil, 0, nil, 0, nil, 0, 0, large) == ZIP_OK else {
                throw TandemError.file(path, "cannot write member '\(name).npy'")
            }
            var done = 0
            while done < data.size {
                let n = min(data.size - done, 1 << 30)
                guard zipWriteInFileInZip(zip, data.bytes + done, UInt32(n)) == ZIP_OK else {
                    throw TandemError.file(path, "cannot write member '\(name).npy'")
                }
                done += n
            }
            guard zipCloseFileInZip(zip) == ZIP_OK else {
                throw TandemError.file(path, "cannot write member '\(name).npy'")
            }
        }
        closed = true
        guard zipClose(zip, nil) == ZIP_OK else { throw TandemError.file(path, "cannot finish the archive") }
        guard rename(temporary, path) == 0 else {
            throw TandemError.file(path, "cannot write: \(String(cString: strerror(errno)))")
        }
    }
}

/// The bytes of a deflated member, inflated.
private final class InflatedMember {
    let bytes: UnsafeMutableRawPointer
    init(size: Int) { bytes = .allocate(byteCount: max(size, 1), alignment: 64) }
    deinit { bytes.deallocate() }
}
