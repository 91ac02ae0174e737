// An image input fed by a CSV column of PNG or JPEG paths (docs/SPEC.md §14): the CSV's cache
// holds the paths (CSV.swift), and each row's file is decoded when its row is read, by the rank
// that reads it, and resized to the input's height and width (ImageFile.swift). The trainer names
// the rows its next batch needs (`prefetch`), and a background thread decodes them while the
// current step computes; a row read before its decode is done is waited for (the data wait the
// run reports). Untrusted paths (§12): a path may not be absolute, hold `..`, or resolve (through
// symlinks) outside the CSV's folder; every file is checked and decoded once at start-up by the
// rank whose shard holds it (Dataset.validate), so a bad one stops the run before any step.

import Foundation
import TandemCore

package final class ImageColumn: SampleArray, @unchecked Sendable {
    /// [N, height, width, channels].
    package let shape: [Int]
    /// The CSV (what errors name).
    package let csv: String
    package let column: String
    package var path: String { "\(csv)[\(column)]" }
    package var byteCount: Int { shape.reduce(1, *) * 4 }
    /// The CSV's folder, symlinks resolved: every image must resolve inside it.
    private let folder: String
    /// Per row, the path as the CSV gives it (relative to the CSV's folder).
    private let files: [String]

    /// The paths file of a CSV's cache (one per line) for `column`, an input of sample shape
    /// [height, width, channels].
    package init(csv: String, column: String, paths: String, sampleShape: [Int]) throws {
        self.csv = csv
        self.column = column
        let text = try String(contentsOfFile: paths, encoding: .utf8)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        files = lines
        shape = [files.count] + sampleShape
        let parent = URL(fileURLWithPath: csv).deletingLastPathComponent().path
        guard let resolved = realpath(parent, nil) else {
            throw TandemError.file(csv, "cannot resolve its folder: \(String(cString: strerror(errno)))")
        }
        folder = String(cString: resolved)
        free(resolved)
    }

    /// The problem with a path as a CSV cell gives it, before any file is looked at (nil: none).
    package static func pathProblem(_ relative: String) -> String? {
        if relative.isEmpty { return "the image path is empty" }
        if relative.hasPrefix("/") { return "'\(relative)' is an absolute path (image paths are relative to the CSV)" }
        if relative.split(separator: "/").contains("..") {
            return "'\(relative)' leaves the CSV's folder ('..'; image paths stay inside it)"
        }
        return nil
    }

    /// Row `row`'s file, resolved and checked to be inside the CSV's folder.
    private func resolve(_ row: Int) throws(ImageProblem) -> String {
        let relative = files[row]
        if let problem = ImageColumn.pathProblem(relative) { throw ImageProblem(problem) }
        guard let real = realpath(folder + "/" + relative, nil) else {
            throw ImageProblem(errno == ENOENT ? "file not found" : String(cString: strerror(errno)))
        }
        defer { free(real) }
        let resolved = String(cString: real)
        guard resolved.hasPrefix(folder + "/") else {
            throw ImageProblem(
                "resolves to \(resolved), outside the CSV's folder (a symlink out; image paths stay inside it)")
        }
        return resolved
    }

    /// The error naming the CSV line and the file.
    private func error(_ row: Int, _ problem: ImageProblem) -> TandemError {
        // The header is line 1 and each row one line (the converter's numbering).
        .file(csv, "line \(row + 2), column '\(column)': \(files[row]): \(problem.message)")
    }

    /// Decodes and resizes row `row` into `out`.
    private func decode(_ row: Int, into out: UnsafeMutablePointer<Float>) throws(ImageProblem) {
        let image = try ImageFile.read(path: try resolve(row), channels: shape[3])
        ImageFile.resize(image, height: shape[1], width: shape[2], into: out)
    }

    /// Row `row`'s problem (a missing, unreadable or corrupt file, a path that leaves the folder), or
    /// nil: the start-up check of every row (Dataset.validate).
    package func problem(row: Int) -> TandemError? {
        do {
            _ = try ImageFile.read(path: try resolve(row), channels: shape[3])
            return nil
        } catch { return self.error(row, error) }
    }

    // MARK: - Decoding ahead

    private let lock = NSCondition()
    /// Rows decoded ahead, by the generation of `prefetch` that asked for them.
    private var ready: [Int: (values: [Float], generation: Int)] = [:]
    private var queue: [Int] = []
    private var inFlight: Int?
    private var generation = 0
    /// The decoding thread, started by the first `prefetch`; it waits for work for as long as the process
    /// runs (one per image input of the training data).
    private var worker: Thread?
    /// The first row that failed to decode after start-up (its file changed): reported by `takeFailure`.
    private var failure: TandemError?
    private var decoded = 0
    private var decodeSeconds = 0.0
    private var waitSeconds = 0.0

    /// Images decoded, seconds spent decoding them, and seconds a reader waited for one.
    package var figures: (decoded: Int, decodeSeconds: Double, waitSeconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        return (decoded, decodeSeconds, waitSeconds)
    }

    /// Decode `rows` ahead, on the background thread; what an earlier call asked for and was not read
    /// by the call before this one is dropped.
    package func prefetch<S: Sequence<Int>>(_ rows: S) {
        lock.lock()
        defer { lock.unlock() }
        generation += 1
        ready = ready.filter { $0.value.generation >= generation - 1 }
        queue = rows.filter { ready[$0] == nil && $0 != inFlight }
        if worker == nil {
            let thread = Thread { self.work() }  // holds the column: it lives as long as the process
            thread.name = "tandem-decode-\(column)"
            thread.start()
            worker = thread
        }
        lock.broadcast()
    }

    private func work() {
        let width = shape.dropFirst().reduce(1, *)
        while true {
            lock.lock()
            while queue.isEmpty { lock.wait() }
            let row = queue.removeFirst()
            let asked = generation
            inFlight = row
            lock.unlock()
            var values = [Float](repeating: 0, count: width)
            let started = monotonicSeconds()
            var problem: TandemError?
            do {
                try values.withUnsafeMutableBufferPointer { (p) throws(ImageProblem) in
                    try decode(row, into: p.baseAddress!)
                }
            } catch { problem = self.error(row, error) }
            lock.lock()
            decodeSeconds += monotonicSeconds() - started
            decoded += 1
            inFlight = nil
            if let problem { failure = failure ?? problem }
            ready[row] = (values, asked)
            lock.broadcast()
            lock.unlock()
        }
    }

    package func readFloats(row: Int, into out: UnsafeMutablePointer<Float>) {
        let started = monotonicSeconds()
        lock.lock()
        while ready[row] == nil && (inFlight == row || queue.contains(row)) { lock.wait() }
        if let entry = ready.removeValue(forKey: row) {
            waitSeconds += monotonicSeconds() - started
            lock.unlock()
            entry.values.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
            return
        }
        lock.unlock()
        // Not asked for ahead: decoded here, the reader waiting.
        do { try decode(row, into: out) } catch {
            out.update(repeating: 0, count: rowWidth)
            lock.lock()
            failure = failure ?? self.error(row, error)
            lock.unlock()
        }
        lock.lock()
        decoded += 1
        let seconds = monotonicSeconds() - started
        decodeSeconds += seconds
        waitSeconds += seconds
        lock.unlock()
    }

    /// The first decode that failed since the last call (a file changed after start-up), if any.
    package func takeFailure() -> TandemError? {
        lock.lock()
        defer {
            failure = nil
            lock.unlock()
        }
        return failure
    }

    package func readTokens(row: Int, limit: Int, into out: UnsafeMutablePointer<Int32>) -> (
        column: Int, value: Double
    )? {
        preconditionFailure("an image column feeds no token input (DataFiles refuses it)")
    }
}
