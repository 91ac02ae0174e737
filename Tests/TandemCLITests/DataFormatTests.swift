// docs/SPEC.md §13: the same data as a directory of .npy files, one .npz (np.savez) or a CSV/TSV
// with a header trains to the same bytes, at one and two ranks; a CSV is converted once into a
// cache that is re-used while it is unchanged; and every malformed .npz or CSV is one message
// naming the file (and the line and column), a non-zero exit, no output, no hung rank.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class DataFormatTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = temporaryDirectory()
    }

    private func genData(_ out: String, _ extra: [String] = []) throws {
        let r = try Harness.tandem(
            ["gen-data", "--out", out, "--samples", "40", "--seed", "3", "--missing", "aux_output=0.2"] + Harness.tiny
                + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    private func train(_ data: String, np: Int? = nil, epochs: Int = 2) throws -> (run: String, stderr: String) {
        let run = dir + "/run-\(UUID().uuidString.prefix(6))"
        let args =
            ["train", "--data", data, "--out", run, "--epochs", "\(epochs)", "--batch-size", "8"] + Harness.tiny
        let r = try np.map { try Harness.mpi($0, args) } ?? Harness.tandem(args)
        XCTAssertEqual(r.status, 0, "\(data) np \(np ?? 1): \(r.stderr)")
        return (run, r.stderr)
    }

    private func weights(_ run: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: run + "/weights.safetensors"))
    }

    func testNPZAndCSVTrainToTheSameBytesAsTheDirectory() throws {
        try genData(dir + "/npy")
        try genData(dir + "/data.npz")
        try genData(dir + "/data.csv")
        try genData(dir + "/data.tsv")
        try genData(dir + "/explicit.npz", ["--format", "npz"])
        // The CSV holds what the directory holds: one column per width-1 array, <name>_k for wider
        // ones, empty cells for the missing labels.
        let text = try String(contentsOfFile: dir + "/data.csv", encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 42)  // header, 40 rows, the final newline
        XCTAssertTrue(lines[0].hasPrefix("main_input_0,main_input_1,"), String(lines[0]))
        XCTAssertTrue(lines[0].hasSuffix("aux_input_4,main_output,aux_output"), String(lines[0]))
        XCTAssertTrue(lines.dropFirst().contains { $0.hasSuffix(",") }, "a missing aux label is an empty cell")
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: dir + "/explicit.npz")),
            try Data(contentsOf: URL(fileURLWithPath: dir + "/data.npz")))

        let reference = try weights(train(dir + "/npy").run)
        for data in ["data.npz", "data.csv", "data.tsv"] {
            XCTAssertEqual(try weights(train(dir + "/" + data).run), reference, "\(data) trains as the directory does")
        }
        let twoRanks = try weights(train(dir + "/npy", np: 2).run)
        let csv = dir + "/data.csv"
        let cache = dir + "/.data.csv.tandem"
        try FileManager.default.removeItem(atPath: cache)
        let (run, said) = try train(csv, np: 2)
        XCTAssertEqual(try weights(run), twoRanks, "a CSV converted under mpirun trains as the directory does")
        XCTAssertTrue(said.contains("read through its cache \(cache)"), said)

        // evaluate and predict read every form alike.
        let e1 = try Harness.tandem(["evaluate", "--data", dir + "/npy", "--weights", run + "/weights.safetensors"])
        let e2 = try Harness.tandem(["evaluate", "--data", csv, "--weights", run + "/weights.safetensors"])
        XCTAssertEqual(e1.status, 0, e1.stderr)
        XCTAssertEqual(e1.stdout, e2.stdout)
        let p1 = try Harness.tandem([
            "predict", "--data", dir + "/data.npz", "--weights", run + "/weights.safetensors", "--out", dir + "/p1",
        ])
        let p2 = try Harness.tandem([
            "predict", "--data", dir + "/npy", "--weights", run + "/weights.safetensors", "--out", dir + "/p2",
        ])
        XCTAssertEqual(p1.status, 0, p1.stderr)
        XCTAssertEqual(p2.status, 0, p2.stderr)
        for o in ["main_output.npy", "aux_output.npy"] {
            XCTAssertEqual(
                try Data(contentsOf: URL(fileURLWithPath: dir + "/p1/" + o)),
                try Data(contentsOf: URL(fileURLWithPath: dir + "/p2/" + o)), o)
        }
    }

    /// The cache is made once and re-used while the CSV is unchanged; a changed CSV is converted again.
    func testTheCSVCacheFollowsTheFile() throws {
        try genData(dir + "/data.csv")
        let stamp = dir + "/.data.csv.tandem/source.json"
        let first = try train(dir + "/data.csv", epochs: 1).run
        let made = try FileManager.default.attributesOfItem(atPath: stamp)[.modificationDate] as! Date
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(try weights(train(dir + "/data.csv", epochs: 1).run), try weights(first))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: stamp)[.modificationDate] as? Date, made)

        // A changed label changes the training: the cache is not stale.
        var text = try String(contentsOfFile: dir + "/data.csv", encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        var cells = lines[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let main = lines[0].split(separator: ",").firstIndex(of: "main_output")!
        cells[main] = cells[main] == "1" ? "0" : "1"
        lines[1] = cells.joined(separator: ",")
        text = lines.joined(separator: "\n") + "\n"
        try text.write(toFile: dir + "/data.csv", atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try weights(train(dir + "/data.csv", epochs: 1).run), try weights(first))
        XCTAssertNotEqual(try FileManager.default.attributesOfItem(atPath: stamp)[.modificationDate] as? Date, made)
    }

    private func expectFailure(
        _ data: String, mentions expected: [String], mpi: Int? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let out = dir + "/out-\(UUID().uuidString.prefix(6))"
        let args = ["train", "--data", data, "--out", out, "--epochs", "1", "--quiet"] + Harness.tiny
        let result = try mpi.map { try Harness.mpi($0, args, timeout: 60) } ?? Harness.tandem(args)
        XCTAssertNotEqual(result.status, 0, "must fail: \(data)", file: file, line: line)
        XCTAssertNotEqual(result.status, 110, "mpirun timed out: a rank hung", file: file, line: line)
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, "one message: \(result.stderr)", file: file, line: line)
        for word in expected {
            XCTAssertTrue(result.stderr.contains(word), "'\(word)' in: \(result.stderr)", file: file, line: line)
        }
        for crash in ["Fatal error", "Stack dump", "backtrace", "Segmentation"] {
            XCTAssertFalse(result.stderr.contains(crash), "no crash trace: \(result.stderr)", file: file, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no output", file: file, line: line)
    }

    /// `good` with line `line` (0: the header) changed by `change`, as `name`.
    private func csvVariant(_ name: String, line: Int, _ change: (inout [String]) -> Void) throws -> String {
        var lines = try String(contentsOfFile: dir + "/good.csv", encoding: .utf8).split(separator: "\n").map(
            String.init)
        var cells = lines[line].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        change(&cells)
        lines[line] = cells.joined(separator: ",")
        let path = dir + "/" + name
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testMalformedCSVAndNPZAreOneMessage() throws {
        try genData(dir + "/good.csv")
        try genData(dir + "/good.npz")
        let ragged = try csvVariant("ragged.csv", line: 5) { $0.append("3") }
        try expectFailure(ragged, mentions: ["ragged.csv", "line 6 has 16 fields, the header has 15"])
        try expectFailure(ragged, mentions: ["ragged.csv", "line 6"], mpi: 2)
        let text = try csvVariant("text.csv", line: 3) { $0[9] = "abc" }
        try expectFailure(text, mentions: ["text.csv", "line 4, column 10 ('aux_input_1')", "'abc' is not a number"])
        let empty = try csvVariant("empty.csv", line: 2) { $0[2] = "" }
        try expectFailure(empty, mentions: ["empty.csv", "line 3, column 3", "empty"])
        let fraction = try csvVariant("fraction.csv", line: 2) { $0[2] = "2.5" }
        try expectFailure(fraction, mentions: ["fraction.csv", "2.5 is not a whole number"])
        let renamed = try csvVariant("renamed.csv", line: 0) { cells in
            cells = cells.map { $0.hasPrefix("aux_input") ? "aux" + $0.dropFirst(9) : $0 }
        }
        try expectFailure(renamed, mentions: ["renamed.csv", "has no column 'aux_input'"])
        try expectFailure(renamed, mentions: ["renamed.csv", "has no column 'aux_input'"], mpi: 2)
        let noLabel = try csvVariant("nolabel.csv", line: 0) { $0[$0.firstIndex(of: "main_output")!] = "other" }
        try expectFailure(noLabel, mentions: ["nolabel.csv", "has no column 'main_output'", "output 'main_output'"])
        try "".write(toFile: dir + "/blank.csv", atomically: true, encoding: .utf8)
        try expectFailure(dir + "/blank.csv", mentions: ["blank.csv"])

        // An .npz with a member missing or misshapen, and a file that is not one.
        let unpacked = dir + "/unpacked"
        try genData(unpacked)
        try FileManager.default.moveItem(atPath: unpacked + "/aux_input.npy", toPath: unpacked + "/aux.npy")
        try NPZArchive.write(
            members: ["main_input", "aux", "main_output", "aux_output"].map { ($0, unpacked + "/\($0).npy") },
            to: dir + "/wrongname.npz")
        try expectFailure(
            dir + "/wrongname.npz", mentions: ["wrongname.npz", "has no member 'aux_input.npy'", "'aux'"])
        try write([Float](repeating: 0, count: 120), [40, 3], unpacked + "/aux_input.npy")
        try NPZArchive.write(
            members: ["main_input", "aux_input", "main_output", "aux_output"].map { ($0, unpacked + "/\($0).npy") },
            to: dir + "/wrongshape.npz")
        try expectFailure(dir + "/wrongshape.npz", mentions: ["wrongshape.npz[aux_input.npy]", "[40, 3]", "[N, 5]"])
        try expectFailure(dir + "/wrongshape.npz", mentions: ["wrongshape.npz"], mpi: 2)
        try "not a zip".write(toFile: dir + "/bad.npz", atomically: true, encoding: .utf8)
        try expectFailure(dir + "/bad.npz", mentions: ["bad.npz", "not a zip archive"])
    }
}
