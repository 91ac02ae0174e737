// Runs the built `tandem` binary (directly or under mpirun through
// scripts/mpi-train.sh) with a watchdog, so a hang is a failure.

import Foundation
import Tandem
import TandemTestSupport
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
    static func run(
        _ executable: String, _ args: [String], timeout: Double = 120,
        environment: [String: String] = [:], unsetting: [String] = []
    ) throws -> RunResult {
        let dir = NSTemporaryDirectory() + "tandem-run-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        for name in unsetting { env[name] = nil }
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
        return RunResult(
            status: process.terminationStatus, stdout: out, stderr: err, seconds: Date().timeIntervalSince(start))
    }

    /// A process started in the background; `finish` waits for it.
    final class Running {
        let process = Process()
        let dir: String
        let started = Date()
        init(dir: String) { self.dir = dir }

        func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

        func finish(timeout: Double = 120) -> RunResult {
            while process.isRunning && Date().timeIntervalSince(started) < timeout { usleep(20_000) }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
                XCTFail("timed out after \(timeout) s")
            }
            process.waitUntilExit()
            let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
            let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
            return RunResult(
                status: process.terminationStatus, stdout: out, stderr: err,
                seconds: Date().timeIntervalSince(started))
        }
    }

    static func start(_ executable: String, _ args: [String], environment: [String: String] = [:]) throws -> Running {
        let dir = NSTemporaryDirectory() + "tandem-run-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        let running = Running(dir: dir)
        running.process.executableURL = URL(fileURLWithPath: executable)
        running.process.arguments = args
        running.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        running.process.standardOutput = FileHandle(forWritingAtPath: dir + "/out")
        running.process.standardError = FileHandle(forWritingAtPath: dir + "/err")
        running.process.standardInput = FileHandle.nullDevice
        try running.process.run()
        return running
    }

    /// `tandem args` in the background, locally (np nil) or under mpirun via the launcher.
    static func startTandem(_ args: [String], np: Int? = nil, environment: [String: String] = [:], timeout: Int = 120)
        throws -> Running
    {
        guard let np else { return try start(binary, args, environment: environment) }
        var env = environment
        env["TANDEM_BIN"] = binary
        // exec: the process we signal is mpirun itself, which forwards SIGUSR1 to every rank.
        return try start(
            "/bin/bash",
            [packageRoot + "/scripts/mpi-train.sh", "-np", "\(np)", "--timeout", "\(timeout)", "--"] + args,
            environment: env)
    }

    static func tandem(_ args: [String], timeout: Double = 120) throws -> RunResult {
        try run(binary, args, timeout: timeout)
    }

    /// `tandem args` under mpirun with `np` ranks, via the project's launcher.
    static func mpi(_ np: Int, _ args: [String], timeout: Double = 120, environment: [String: String] = [:]) throws
        -> RunResult
    {
        try run(
            "/bin/bash",
            [packageRoot + "/scripts/mpi-train.sh", "-np", "\(np)", "--timeout", "\(Int(timeout))", "--"] + args,
            timeout: timeout + 15, environment: environment.merging(["TANDEM_BIN": binary]) { $1 })
    }

    /// Size flags of the small model every CLI test uses.
    static let tiny = [
        "--vocab", "50", "--seq-len", "8", "--embed-dim", "8", "--lstm-units", "6",
        "--aux-features", "5", "--dense-units", "8", "--dense-layers", "2",
    ]

    /// The small model with a table at least 4 × lstm-units wide, so training takes
    /// the compact, factored step (CompactTableStep.swift), as the headline model does.
    static let tinyWide = [
        "--vocab", "50", "--seq-len", "8", "--embed-dim", "24", "--lstm-units", "5",
        "--aux-features", "5", "--dense-units", "8", "--dense-layers", "2",
    ]

    /// `tandem gen-data` of the tiny model into `dir`, plus seeded main_output sample weights in [0.2, 3).
    static func tinyDataWithSampleWeights(
        _ dir: String, samples: Int, seed: UInt64, weightSeed: UInt64,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let gen = try tandem(["gen-data", "--out", dir, "--samples", "\(samples)", "--seed", "\(seed)"] + tiny)
        XCTAssertEqual(gen.status, 0, gen.stderr, file: file, line: line)
        var rng = SeededGenerator(seed: weightSeed)
        let w = (0..<samples).map { _ in Float(rng.uniform(0.2, 3)) }
        try w.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [samples], to: dir + "/main_output.sample_weight.npy")
        }
    }

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
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}
