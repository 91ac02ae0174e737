// Runs the built `tandem` binary (directly or under mpirun through
// scripts/mpi-train.sh) with a watchdog, so a hang is a failure.

import Foundation
import Tandem
import XCTest

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double
}

enum Harness {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// The tandem binary next to the test bundle (same build), or $TANDEM_BIN.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["TANDEM_BIN"] { return b }
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("tandem").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return packageRoot + "/.build/debug/tandem"
    }

    /// Runs `executable args` with a deadline; output goes to files (no pipe deadlock).
    static func run(_ executable: String, _ args: [String], timeout: Double = 120,
                    environment: [String: String] = [:]) throws -> RunResult {
        let dir = NSTemporaryDirectory() + "tandem-run-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: dir + "/out")
        process.standardError = FileHandle(forWritingAtPath: dir + "/err")
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
        if process.isRunning {
            kill(-process.processIdentifier, SIGKILL)
            process.terminate()
            process.waitUntilExit()
            XCTFail("timed out after \(timeout) s: \(executable) \(args.joined(separator: " "))")
        }
        process.waitUntilExit()
        let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: dir)
        return RunResult(status: process.terminationStatus, stdout: out, stderr: err, seconds: Date().timeIntervalSince(start))
    }

    static func tandem(_ args: [String], timeout: Double = 120) throws -> RunResult {
        try run(binary, args, timeout: timeout)
    }

    /// `tandem args` under mpirun with `np` ranks, via the project's launcher.
    static func mpi(_ np: Int, _ args: [String], timeout: Double = 120) throws -> RunResult {
        try run("/bin/bash", [packageRoot + "/scripts/mpi-train.sh", "-np", "\(np)", "--timeout", "\(Int(timeout))", "--"] + args,
                timeout: timeout + 15, environment: ["TANDEM_BIN": binary])
    }

    static func temporaryDirectory(_ name: String = #function) -> String {
        let path = NSTemporaryDirectory() + "tandem-cli-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Size flags of the small model every CLI test uses.
    static let tiny = ["--vocab", "50", "--seq-len", "8", "--embed-dim", "8", "--lstm-units", "6",
                       "--aux-features", "5", "--dense-units", "8", "--dense-layers", "2"]

    static func weights(_ path: String) throws -> [String: [Float]] {
        let file = try SafeTensorsFile(path: path)
        var result: [String: [Float]] = [:]
        for (name, info) in file.tensors {
            var values = [Float](repeating: 0, count: info.shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer { try file.read(name, shape: info.shape, into: $0.baseAddress!) }
            result[name] = values
        }
        return result
    }

    static func metrics(_ run: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }
}
