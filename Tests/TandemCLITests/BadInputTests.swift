// docs/SPEC.md §7: every bad input gives one clear message naming the file or flag
// and the problem, a non-zero exit, no crash trace, and no output written.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class BadInputTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/good", "--samples", "40"] + Harness.tiny).status, 0)
    }

    /// A copy of the good dataset with `change` applied.
    private func variant(_ name: String, _ change: (String) throws -> Void) throws -> String {
        let path = dir + "/" + name
        try FileManager.default.copyItem(atPath: dir + "/good", toPath: path)
        try change(path)
        return path
    }

    private func expectFailure(
        _ args: [String], mentions expected: [String], mpi: Int? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let out = dir + "/out-\(UUID().uuidString.prefix(6))"
        let full = args + ["--out", out]
        let result = try mpi.map { try Harness.mpi($0, full, timeout: 60) } ?? Harness.tandem(full)
        XCTAssertNotEqual(result.status, 0, "must fail: \(args)", file: file, line: line)
        XCTAssertNotEqual(result.status, 110, "mpirun timed out: a rank hung", file: file, line: line)
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, "one message: \(result.stderr)", file: file, line: line)
        for word in expected {
            XCTAssertTrue(result.stderr.contains(word), "'\(word)' in: \(result.stderr)", file: file, line: line)
        }
        for crash in ["Fatal error", "Stack dump", "backtrace", "Segmentation"] {
            XCTAssertFalse(result.stderr.contains(crash), "no crash trace: \(result.stderr)", file: file, line: line)
        }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: out + "/weights.safetensors"), "no output", file: file, line: line)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: out + "/checkpoint.safetensors"), "no output", file: file, line: line
        )
        if mpi != nil { XCTAssertLessThan(result.seconds, 30, "stopped promptly", file: file, line: line) }
    }

    private func train(_ data: String, _ extra: [String] = []) -> [String] {
        ["train", "--data", data, "--epochs", "1", "--quiet"] + Harness.tiny + extra
    }

    func testMissingAndMalformedFiles() throws {
        try expectFailure(train(dir + "/nowhere"), mentions: ["nowhere", "not found"])
        let noAux = try variant("noaux") { try FileManager.default.removeItem(atPath: $0 + "/aux_input.npy") }
        try expectFailure(train(noAux), mentions: ["aux_input.npy", "not found"])
        let truncated = try variant("trunc") { p in
            let data = try Data(contentsOf: URL(fileURLWithPath: p + "/main_input.npy"))
            try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: p + "/main_input.npy"))
        }
        try expectFailure(train(truncated), mentions: ["main_input.npy", "truncated"])
        // Float token ids are cast as Keras's Embedding casts them; one with a fraction is refused.
        let floatTokens = try variant("floattok") { p in
            var v = [Float](repeating: 1, count: 40 * 8)
            v[0] = 1.5
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [40, 8], to: p + "/main_input.npy") }
        }
        try expectFailure(train(floatTokens), mentions: ["main_input.npy", "row 0", "not a whole number"])
        let wrongShape = try variant("shape") { p in
            let v = [Float](repeating: 1, count: 40 * 4)
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [40, 4], to: p + "/aux_input.npy") }
        }
        try expectFailure(train(wrongShape), mentions: ["aux_input.npy", "shape [40, 4]", "[N, 5]"])
        let rows = try variant("rows") { p in
            let v = [Float](repeating: 1, count: 39)
            try v.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [39, 1], to: p + "/main_output.npy")
            }
        }
        try expectFailure(train(rows), mentions: ["main_output.npy", "39 rows", "40"])
    }

    func testBadValues() throws {
        let token = try variant("token") { p in
            var v = [Int32](repeating: 3, count: 40 * 8)
            v[17 * 8 + 2] = 50
            try v.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [40, 8], to: p + "/main_input.npy") }
        }
        try expectFailure(train(token), mentions: ["main_input.npy", "row 17", "token id 50", "[0, 50)"])
        let nan = try variant("nan") { p in
            var v = [Float](repeating: 0.5, count: 40 * 5)
            v[3 * 5 + 1] = .nan
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [40, 5], to: p + "/aux_input.npy") }
        }
        try expectFailure(train(nan), mentions: ["aux_input.npy", "row 3", "not finite"])
        // In a target, NaN is a missing label (docs/SPEC.md §10); infinity is still refused.
        let inf = try variant("inf-target") { p in
            var v = [Float](repeating: 1, count: 40)
            v[6] = .nan
            v[9] = .infinity
            try v.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [40, 1], to: p + "/main_output.npy")
            }
        }
        try expectFailure(
            train(inf), mentions: ["main_output.npy", "row 9", "inf", "NaN in every column marks a missing label"])
    }

    /// Token ids stored as floats (as `keras.Input`'s default float32 holds them) train exactly as the
    /// same ids stored as integers; an id with a fraction is refused naming the file, row and value.
    func testFloatTokenIdsAreCastOrRefusedNeverTruncated() throws {
        let ids = try NPYArray(path: dir + "/good/main_input.npy")
        var tokens = [Int32](repeating: 0, count: ids.shape.reduce(1, *))
        for r in 0..<ids.rows {
            _ = tokens.withUnsafeMutableBufferPointer {
                ids.readTokens(row: r, limit: 50, into: $0.baseAddress! + r * 8)
            }
        }
        let asFloats = tokens.map(Float.init)
        let floatIDs = try variant("float-ids") { p in try write(asFloats, [40, 8], p + "/main_input.npy") }
        let int64IDs = try variant("int64-ids") { p in
            let data = tokens.flatMap { v in withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) } }
            var header = "{'descr': '<i8', 'fortran_order': False, 'shape': (40, 8), }"
            header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
            let prefix: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count), 0]
            try Data(prefix + Array(header.utf8) + data).write(to: URL(fileURLWithPath: p + "/main_input.npy"))
        }
        var weights: [[String: [Float]]] = []
        for data in [dir + "/good", floatIDs, int64IDs] {
            let out = dir + "/run-\(weights.count)"
            let r = try Harness.tandem(train(data, ["--seed", "3"]) + ["--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            weights.append(try Harness.weights(out + "/weights.safetensors"))
        }
        XCTAssertEqual(weights[1], weights[0], "float32 ids train as int32 ids")
        XCTAssertEqual(weights[2], weights[0], "int64 ids train as int32 ids")
        let fraction = try variant("fraction") { p in
            var v = asFloats
            v[17 * 8 + 2] = 2.5
            try write(v, [40, 8], p + "/main_input.npy")
        }
        try expectFailure(
            train(fraction), mentions: ["main_input.npy", "row 17", "column 2", "token id 2.5", "not a whole number"])
    }

    func testBadFlags() throws {
        let good = dir + "/good"
        try expectFailure(train(good, ["--loss-weight", "side_output=1"]), mentions: ["--loss-weight", "side_output"])
        try expectFailure(train(good, ["--batch-size", "0"]), mentions: ["--batch-size"])
        try expectFailure(
            train(good, ["--optimizer", "multioptimizer"]), mentions: ["--optimizer", "multioptimizer", "adagrad"])
        try expectFailure(train(good, ["--lr=-0.1"]), mentions: ["--lr must be a positive number"])
        try expectFailure(
            train(good, ["--optimizer", "adam", "--momentum", "0.9"]), mentions: ["--momentum applies to sgd, rmsprop"])
        try expectFailure(
            train(good, ["--clipnorm", "1", "--clipvalue", "0.5"]),
            mentions: ["only one of clipnorm, global_clipnorm and clipvalue"])
        try expectFailure(train(good, ["--loss", "main_output=ctc"]), mentions: ["--loss", "ctc"])
        try expectFailure(train(good, ["--l2", "nolayer=0.1"]), mentions: ["--l2", "nolayer"])
        try expectFailure(train(good, ["--class-weight", "main_output=x"]), mentions: ["--class-weight"])
        try expectFailure(
            train(good, ["--head-reduction", "aux_output=mean"]),
            mentions: ["--head-reduction 'aux_output=mean'", "batch", "labeled"])
        try expectFailure(
            train(good, ["--head-reduction", "side_output=labeled"]),
            mentions: ["--head-reduction", "side_output", "main_output, aux_output"])
        try expectFailure(
            train(good, ["--gradient-surgery", "mgda"]), mentions: ["--gradient-surgery 'mgda'", "pcgrad"])
        try expectFailure(
            train(good, ["--gradient-surgery", "pcgrad", "--reproducible"]),
            mentions: ["not available with --reproducible"])
        try expectFailure(
            train(good, ["--monitor", "val_loss"]),
            mentions: ["--monitor: 'val_loss' is not a figure of this run", "--validation-split"])
        try expectFailure(
            train(good, ["--monitor", "loss+main_output_accuracy"]),
            mentions: ["cannot tell whether higher or lower is better", "--mode"])
        try expectFailure(train(good, ["--patience", "2"]), mentions: ["--patience needs --monitor"])
        try expectFailure(train(good, ["--monitor", "2*"]), mentions: ["--monitor '2*'"])
        try expectFailure(
            train(good, ["--loss-weight-schedule", "aux_output=linear:1:0"]),
            mentions: ["--loss-weight-schedule 'linear:1:0'", "linear:W0:W1:START:END"])
        try expectFailure(
            train(good, ["--loss-weight-schedule", "side_output=constant:1"]),
            mentions: ["unknown output 'side_output'"])
        try expectFailure(
            train(good, ["--loss-weighting", "mgda"]),
            mentions: ["--loss-weighting 'mgda'", "uncertainty and gradnorm"])
        try expectFailure(
            train(good, ["--loss-weighting", "gradnorm", "--loss-weight-schedule", "aux_output=constant:1"]),
            mentions: ["does not combine with --loss-weight-schedule"])
        try expectFailure(
            train(good, ["--loss-weighting", "uncertainty", "--gradnorm-alpha", "1"]),
            mentions: ["--gradnorm-alpha applies to --loss-weighting gradnorm"])
    }

    func testUnwritableOutputIsNamed() throws {
        _ = FileManager.default.createFile(atPath: dir + "/plainfile", contents: Data("x".utf8))
        let train = try Harness.tandem(
            ["train", "--data", dir + "/good", "--out", dir + "/plainfile/run", "--quiet"] + Harness.tiny)
        XCTAssertEqual(train.status, 1)
        XCTAssertTrue(
            train.stderr.contains("plainfile/run: cannot create the directory (Not a directory)"), train.stderr)
        let gen = try Harness.tandem(["gen-data", "--out", dir + "/plainfile", "--samples", "3"] + Harness.tiny)
        XCTAssertEqual(gen.status, 1)
        XCTAssertTrue(gen.stderr.contains("plainfile: exists and is not a directory"), gen.stderr)
    }

    func testCorruptWeightsAndCheckpoint() throws {
        _ = FileManager.default.createFile(atPath: dir + "/junk.safetensors", contents: Data(repeating: 7, count: 64))
        try expectFailure(train(dir + "/good", ["--init", dir + "/junk.safetensors"]), mentions: ["junk.safetensors"])
        try FileManager.default.createDirectory(atPath: dir + "/oldrun", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: dir + "/oldrun/checkpoint.safetensors", contents: Data(repeating: 0, count: 5))
        try expectFailure(
            train(dir + "/good", ["--resume", dir + "/oldrun"]), mentions: ["checkpoint.safetensors", "truncated"])
    }

    func testBadInputsUnderMPIStopEveryRankWithOneMessage() throws {
        let noAux = try variant("noaux-mpi") { try FileManager.default.removeItem(atPath: $0 + "/aux_input.npy") }
        try expectFailure(train(noAux), mentions: ["aux_input.npy", "not found"], mpi: 2)
        let rows = try variant("rows-mpi") { p in
            let v = [Float](repeating: 1, count: 39)
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [39, 1], to: p + "/aux_output.npy") }
        }
        try expectFailure(train(rows), mentions: ["aux_output.npy", "39 rows"], mpi: 2)
        let nan = try variant("nan-mpi") { p in
            var v = [Float](repeating: 0.5, count: 40)
            v[39] = .infinity  // the last row: rank 1's share
            try v.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [40, 1], to: p + "/main_output.npy")
            }
        }
        try expectFailure(train(nan), mentions: ["main_output.npy", "row 39", "not finite"], mpi: 2)
        try expectFailure(train(dir + "/good", ["--loss-weight", "nothing=2"]), mentions: ["nothing"], mpi: 2)
        _ = FileManager.default.createFile(atPath: dir + "/junk2.safetensors", contents: Data(repeating: 9, count: 100))
        try expectFailure(
            train(dir + "/good", ["--init", dir + "/junk2.safetensors"]), mentions: ["junk2.safetensors"], mpi: 2)
        try expectFailure(train(dir + "/good", ["--batch-size", "0"]), mentions: ["--batch-size"], mpi: 2)
        let truncated = try variant("trunc-mpi") { p in
            let data = try Data(contentsOf: URL(fileURLWithPath: p + "/aux_input.npy"))
            try data.prefix(data.count - 7).write(to: URL(fileURLWithPath: p + "/aux_input.npy"))
        }
        try expectFailure(train(truncated), mentions: ["aux_input.npy", "truncated"], mpi: 2)
        let floatTokens = try variant("floattok-mpi") { p in
            var v = [Float](repeating: 1, count: 40 * 8)
            v[39 * 8] = 0.5  // the last row: rank 1's share
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [40, 8], to: p + "/main_input.npy") }
        }
        try expectFailure(train(floatTokens), mentions: ["main_input.npy", "row 39", "not a whole number"], mpi: 2)
        let wrongShape = try variant("shape-mpi") { p in
            let v = [Float](repeating: 1, count: 40 * 2)
            try v.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [40, 2], to: p + "/main_output.npy")
            }
        }
        try expectFailure(train(wrongShape), mentions: ["main_output.npy", "[N, 1]"], mpi: 2)
        try FileManager.default.createDirectory(atPath: dir + "/oldrun-mpi", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: dir + "/oldrun-mpi/checkpoint.safetensors", contents: Data(repeating: 3, count: 4096))
        try expectFailure(
            train(dir + "/good", ["--resume", dir + "/oldrun-mpi"]), mentions: ["checkpoint.safetensors"], mpi: 2)
    }
}
