// CSV and TSV datasets with a header row (docs/SPEC.md §13): a column named after a width-1
// input or output feeds it; a wider one takes the columns `<name>_0 … <name>_{k-1}`;
// `<output>.sample_weight` gives sample weights. An empty cell in an output column is a missing
// label (NaN, §10); anything else that is not a number is refused naming the file, line and column.
//
// The file is converted once, streaming (libcsv, fed 1 MiB blocks: the text is never held in
// memory), into a cache of float64 `.npy` files — one per input, output and sample weight —
// that the run then memory-maps like a dataset directory. float64 keeps every value the text
// gives (pandas reads a CSV as float64 too). The cache sits beside the CSV
// (`.<file>.tandem/`, else under the temporary directory) and is re-used while the CSV's size
// and modification time and the columns asked for are unchanged.
//
// An image input [H, W, C] may instead have one column named after it holding PNG or JPEG paths
// relative to the CSV: those are kept as text (`<name>.paths`, one per line) and the files are
// read when the rows are (ImageColumn.swift), never converted into the cache.

import CCSV
import Foundation
import TandemCore

/// One array a CSV feeds: `name` (an input, an output, or `<output>.sample_weight`).
package struct CSVColumnGroup: Equatable, Sendable {
    package var name: String
    /// The declared sample shape for inputs of rank ≥ 2 (nil entries take their size from the
    /// column count); nil: [N] for one column, [N, k] for k.
    package var sampleShape: [Int?]?
    /// Required: a missing column is an error (else the array is simply absent).
    package var required: Bool
    /// An output's target or weight: an empty cell is a missing label (NaN) for targets.
    package var emptyIsMissing: Bool
    /// An image input: a single column named after it holds image paths (kept as text).
    package var imagePaths: Bool

    package init(
        name: String, sampleShape: [Int?]? = nil, required: Bool, emptyIsMissing: Bool, imagePaths: Bool = false
    ) {
        self.name = name
        self.sampleShape = sampleShape
        self.required = required
        self.emptyIsMissing = emptyIsMissing
        self.imagePaths = imagePaths
    }
}

package enum CSVDataset {
    /// The cache directory of `csv` holding `groups`, converted now unless a valid one exists.
    /// Returns the directory and whether it was converted (false: re-used).
    package static func cache(csv: String, groups: [CSVColumnGroup]) throws -> (directory: String, converted: Bool) {
        let source = try CSVSource(path: csv, groups: groups)
        let directory = cacheDirectory(for: csv)
        if source.matches(directory) { return (directory, false) }
        let parent = URL(fileURLWithPath: directory).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let temporary = directory + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        try convert(csv: csv, groups: groups, into: temporary)
        try source.stamp(temporary)
        try? FileManager.default.removeItem(atPath: directory)
        if rename(temporary, directory) != 0 && !source.matches(directory) {  // another rank's rename won
            throw TandemError.file(directory, "cannot write the CSV's cache: \(String(cString: strerror(errno)))")
        }
        return (directory, true)
    }

    /// `.<name>.tandem` beside the CSV when that folder is writable, else under the temporary directory.
    package static func cacheDirectory(for csv: String) -> String {
        let url = URL(fileURLWithPath: csv).standardizedFileURL
        let folder = url.deletingLastPathComponent().path
        let name = ".\(url.lastPathComponent).tandem"
        if access(folder, W_OK) == 0 { return folder + "/" + name }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a of the path: one cache per CSV
        for byte in url.path.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return NSTemporaryDirectory() + "tandem-csv-cache/\(String(hash, radix: 16))/" + name
    }

    /// Streams `csv` into `<group>.npy` (float64) in `directory`.
    static func convert(csv: String, groups: [CSVColumnGroup], into directory: String) throws {
        guard let file = fopen(csv, "rb") else {
            throw TandemError.file(csv, errno == ENOENT ? "file not found" : String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        let state = CSVConversion(path: csv, groups: groups, directory: directory)
        var parser = csv_parser()
        guard csv_init(&parser, UInt8(CSV_APPEND_NULL)) == 0 else {
            throw TandemError.file(csv, "cannot start the parser")
        }
        defer { csv_free(&parser) }
        if csv.lowercased().hasSuffix(".tsv") { csv_set_delim(&parser, UInt8(CSV_TAB)) }
        let context = Unmanaged.passUnretained(state).toOpaque()
        let block = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 16)
        defer { buffer.deallocate() }
        while state.error == nil {
            let n = fread(buffer, 1, block, file)
            if n == 0 { break }
            if csv_parse(&parser, buffer, n, csvField, csvRowEnd, context) != n {
                throw TandemError.file(csv, "cannot parse: \(String(cString: csv_strerror(csv_error(&parser))))")
            }
        }
        if state.error == nil { csv_fini(&parser, csvField, csvRowEnd, context) }
        if ferror(file) != 0 { throw TandemError.file(csv, "read error: \(String(cString: strerror(errno)))") }
        try state.finish()
    }
}

/// The CSV a cache was made from: its size and modification time, and the groups asked for.
private struct CSVSource: Codable, Equatable {
    var size: Int
    var modified: Double
    var groups: [String]
    static let stampName = "source.json"

    init(path: String, groups: [CSVColumnGroup]) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw TandemError.file(path, errno == ENOENT ? "file not found" : String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw TandemError.file(path, "not a regular file") }
        size = Int(info.st_size)
        modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) * 1e-9
        self.groups = groups.map { g in
            "\(g.name) \(g.sampleShape.map { $0.map { $0.map(String.init) ?? "None" }.joined(separator: ",") } ?? "-") \(g.required) \(g.emptyIsMissing) \(g.imagePaths)"
        }
    }

    func matches(_ directory: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: directory + "/" + CSVSource.stampName),
            let cached = try? JSONDecoder().decode(CSVSource.self, from: data)
        else { return false }
        return cached == self
    }

    func stamp(_ directory: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: directory + "/" + CSVSource.stampName))
    }
}

// libcsv's callbacks: a field, then the end of a row.
private func csvField(_ field: UnsafeMutableRawPointer?, _ length: Int, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<CSVConversion>.fromOpaque(context!).takeUnretainedValue().field(field, length)
}

private func csvRowEnd(_ terminator: Int32, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<CSVConversion>.fromOpaque(context!).takeUnretainedValue().rowEnd()
}

/// The conversion in progress: the header, then each row's cells into the groups' files.
private final class CSVConversion {
    let path: String
    let groups: [CSVColumnGroup]
    let directory: String
    var error: TandemError?
    private var header: [String] = []
    private var inHeader = true
    /// Per CSV column: (group, index within the group's row), or nil when no group reads it.
    private var targets: [(group: Int, index: Int)?] = []
    private var widths: [Int] = []
    private var writers: [NPYStreamWriter?] = []
    /// Per group fed as image paths: the `.paths` file, and the row's path.
    private var pathWriters: [UnsafeMutablePointer<FILE>?] = []
    private var pathCells: [String] = []
    private var row: [[Double]] = []
    private var column = 0
    /// The CSV line of the current row (the header is line 1; one line per row).
    private var line = 1
    private var rows = 0

    init(path: String, groups: [CSVColumnGroup], directory: String) {
        self.path = path
        self.groups = groups
        self.directory = directory
        pathCells = Array(repeating: "", count: groups.count)
    }

    deinit { for file in pathWriters { if let file { fclose(file) } } }

    func field(_ bytes: UnsafeMutableRawPointer?, _ length: Int) {
        guard error == nil else { return }
        defer { column += 1 }
        if inHeader {
            header.append(
                bytes.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self) } ?? "")
            return
        }
        guard column < targets.count, let (g, i) = targets[column] else { return }
        if pathWriters[g] != nil {
            let cell = String(decoding: UnsafeRawBufferPointer(start: bytes, count: length), as: UTF8.self)
            let relative = cell.hasSuffix("\r") ? String(cell.dropLast()) : cell
            if let problem = relative.contains(where: \.isNewline)
                ? "the path holds a line break" : ImageColumn.pathProblem(relative)
            {
                fail("line \(line), column \(column + 1) ('\(header[column])'): \(problem)")
            }
            pathCells[g] = relative
            return
        }
        let text = bytes!.assumingMemoryBound(to: CChar.self)  // CSV_APPEND_NULL: NUL-terminated
        var start = text
        while start.pointee == 0x20 || start.pointee == 0x09 { start += 1 }
        if start.pointee == 0 {
            if groups[g].emptyIsMissing {
                row[g][i] = .nan
                return
            }
            fail(
                "line \(line), column \(column + 1) ('\(header[column])'): the cell is empty (only an output's cells may be, for a missing label)"
            )
            return
        }
        var end: UnsafeMutablePointer<CChar>?
        let value = strtod(start, &end)
        var rest = end!
        while rest.pointee == 0x20 || rest.pointee == 0x09 || rest.pointee == 0x0D { rest += 1 }
        guard rest.pointee == 0, end != start else {
            let shown = String(cString: text).prefix(40)
            fail("line \(line), column \(column + 1) ('\(header[column])'): '\(shown)' is not a number")
            return
        }
        row[g][i] = value
    }

    func rowEnd() {
        guard error == nil else { return }
        defer {
            column = 0
            line += 1
        }
        if inHeader {
            inHeader = false
            start()
            return
        }
        guard column == header.count else {
            fail("line \(line) has \(column) field\(column == 1 ? "" : "s"), the header has \(header.count)")
            return
        }
        for (g, writer) in writers.enumerated() { writer?.append(row[g]) }
        for (g, file) in pathWriters.enumerated() { if let file { fputs(pathCells[g] + "\n", file) } }
        rows += 1
    }

    /// After the header: which column feeds which group, and each group's file.
    private func start() {
        targets = Array(repeating: nil, count: header.count)
        var byName: [String: Int] = [:]
        for (c, name) in header.enumerated() {
            if byName[name] != nil {
                fail("line 1: column \(c + 1) repeats the name '\(name)'")
                return
            }
            byName[name] = c
        }
        for (g, group) in groups.enumerated() {
            var columns: [Int] = []
            if let c = byName[group.name] {
                if byName[group.name + "_0"] != nil {
                    fail(
                        "line 1: both '\(group.name)' and '\(group.name)_0' are columns; '\(group.name)' is fed by one or the other"
                    )
                    return
                }
                columns = [c]
            } else {
                while let c = byName["\(group.name)_\(columns.count)"] { columns.append(c) }
            }
            widths.append(columns.count)
            row.append(Array(repeating: 0, count: max(columns.count, 1)))
            if group.imagePaths, let c = byName[group.name] {
                // One column named after an image input: its cells are paths to image files.
                guard let file = fopen(directory + "/\(group.name).paths", "wb") else {
                    error = .file(directory, "cannot write the CSV's cache: \(String(cString: strerror(errno)))")
                    return
                }
                targets[c] = (g, 0)
                writers.append(nil)
                pathWriters.append(file)
                continue
            }
            pathWriters.append(nil)
            guard !columns.isEmpty else {
                if group.required {
                    fail(
                        "has no column '\(group.name)' (or '\(group.name)_0', '\(group.name)_1', …) for the model's input '\(group.name)'"
                    )
                    return
                }
                writers.append(nil)
                continue
            }
            for (i, c) in columns.enumerated() { targets[c] = (g, i) }
            let shape: [Int]
            if let declared = group.sampleShape {
                let fixed = declared.compactMap { $0 }.reduce(1, *)
                let free = declared.filter { $0 == nil }.count
                guard free <= 1, columns.count % fixed == 0, free == 1 || columns.count == fixed else {
                    fail(
                        "has \(columns.count) columns '\(group.name)_*', which do not fill the model's input '\(group.name)' of sample shape (\(declared.map { $0.map(String.init) ?? "None" }.joined(separator: ", ")))"
                    )
                    return
                }
                shape = declared.map { $0 ?? columns.count / fixed }
            } else {
                shape = columns.count == 1 && byName[group.name] != nil ? [] : [columns.count]
            }
            do {
                writers.append(try NPYStreamWriter(path: directory + "/\(group.name).npy", sampleShape: shape))
            } catch {
                self.error = error as? TandemError ?? .file(directory, "\(error)")
                return
            }
        }
    }

    private func fail(_ message: String) { if error == nil { error = .file(path, message) } }

    func finish() throws {
        if let error { throw error }
        if inHeader { throw TandemError.file(path, "is empty (a header row naming the columns is needed)") }
        if column != 0 { rowEnd() }  // a last line without a newline (csv_fini reports it)
        if let error { throw error }
        guard rows > 0 else { throw TandemError.file(path, "has a header but no rows") }
        for writer in writers { try writer?.finish(rows: rows) }
        for file in pathWriters.compactMap({ $0 }) where fflush(file) != 0 || ferror(file) != 0 {
            throw TandemError.file(directory, "cannot write the CSV's cache: \(String(cString: strerror(errno)))")
        }
    }
}

/// A float64 .npy written row by row: a fixed-size header rewritten with the row count at the end.
private final class NPYStreamWriter {
    let path: String
    let sampleShape: [Int]
    private let file: UnsafeMutablePointer<FILE>
    static let headerSize = 128

    init(path: String, sampleShape: [Int]) throws {
        self.path = path
        self.sampleShape = sampleShape
        guard let f = fopen(path, "wb") else {
            throw TandemError.file(path, "cannot create: \(String(cString: strerror(errno)))")
        }
        file = f
        setvbuf(file, nil, _IOFBF, 1 << 20)
        fwrite(NPYStreamWriter.header(rows: 0, sampleShape), 1, NPYStreamWriter.headerSize, file)
    }

    deinit { fclose(file) }

    func append(_ values: [Double]) {
        values.withUnsafeBufferPointer { _ = fwrite($0.baseAddress!, 8, $0.count, file) }
    }

    func finish(rows: Int) throws {
        fseek(file, 0, SEEK_SET)
        fwrite(NPYStreamWriter.header(rows: rows, sampleShape), 1, NPYStreamWriter.headerSize, file)
        guard fflush(file) == 0, ferror(file) == 0 else {
            throw TandemError.file(path, "cannot write: \(String(cString: strerror(errno)))")
        }
    }

    /// A version 1.0 header of exactly `headerSize` bytes.
    static func header(rows: Int, _ sampleShape: [Int]) -> [UInt8] {
        let shape = [rows] + sampleShape
        let text = shape.count == 1 ? "(\(rows),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '<f8', 'fortran_order': False, 'shape': \(text), }"
        dict += String(repeating: " ", count: headerSize - 10 - dict.utf8.count - 1) + "\n"
        let length = dict.utf8.count
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8)
    }
}

extension CSVDataset {
    /// Writes `arrays` as one CSV (a TSV when `path` ends in .tsv) with a header: a width-1 array
    /// is column `name`, a wider one `name_0 … name_{k-1}`; every value exactly (whole numbers as
    /// integers, floats by the shortest text that reads back as the same float64); NaN, a
    /// missing label, as an empty cell. Written under a temporary name, renamed at the end.
    package static func write(arrays: [(name: String, array: NPYArray)], to path: String) throws {
        let delimiter: UInt8 = path.lowercased().hasSuffix(".tsv") ? 0x09 : 0x2C
        let writer = try AtomicFileWriter(path: path)
        var text: [UInt8] = []
        text.reserveCapacity(1 << 21)
        func quoted(_ field: String) -> [UInt8] {
            let bytes = Array(field.utf8)
            let needs = bytes.contains { $0 == delimiter || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }
            guard needs else { return bytes }
            var out = [UInt8](repeating: 0, count: 2 * bytes.count + 2)
            let n = out.withUnsafeMutableBytes { csv_write($0.baseAddress, $0.count, bytes, bytes.count) }
            return Array(out[..<n])
        }
        var names: [String] = []
        for (name, array) in arrays {
            if array.rowWidth == 1 && array.shape.count <= 2 {
                names.append(name)
            } else {
                names += (0..<array.rowWidth).map { "\(name)_\($0)" }
            }
        }
        text += names.map(quoted).joined(separator: [delimiter])
        text.append(0x0A)
        let rows = arrays.first?.array.rows ?? 0
        for r in 0..<rows {
            var first = true
            for (_, array) in arrays {
                for j in 0..<array.rowWidth {
                    if !first { text.append(delimiter) }
                    first = false
                    let v = array.double(row: r, column: j)
                    if v.isNaN { continue }
                    if array.type.isInteger || (v.rounded() == v && abs(v) < 1e15 && !(v == 0 && v.sign == .minus)) {
                        text += String(Int64(v)).utf8
                    } else {
                        text += v.description.utf8
                    }
                }
            }
            text.append(0x0A)
            if text.count >= 1 << 20 {
                try text.withUnsafeBytes { try writer.write($0) }
                text.removeAll(keepingCapacity: true)
            }
        }
        try text.withUnsafeBytes { try writer.write($0) }
        try writer.commit()
    }
}
