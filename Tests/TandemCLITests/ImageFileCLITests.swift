// Image files named by a CSV (docs/SPEC.md §14, #31): the pixels Tandem feeds an image input are
// Pillow's decode of the same PNG and JPEG files, resized as jax.image.resize(linear, antialias=False)
// — TensorFlow's half-pixel bilinear — does; training from the CSV is training from those arrays, at
// one and two ranks; uint8 arrays train as their float32 values; and untrusted files and paths stop
// the run with one message naming the CSV line and the file, nothing written, no rank left waiting.
// Needs TANDEM_KERAS_PYTHON (Pillow, JAX and Keras; scripts/test.sh installs them).

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class ImageFileCLITests: XCTestCase {
    private var dir = ""

    private func python(_ code: String) throws -> RunResult {
        guard let p = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: p)
        else { throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras and sets it)") }
        return try Harness.run(
            p, ["-c", code, dir], timeout: 300,
            environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"])
    }

    /// Twelve PNG and JPEG files of four sizes under `pics/`, the CSV naming them with two label columns,
    /// Pillow's pixels resized by JAX to 8 × 6 (`ref.npy`), the same labels as arrays (`labels/`), an
    /// identity model and a two-head convolutional model on an image input [8, 6, 3].
    override func setUpWithError() throws {
        dir = temporaryDirectory("imagefiles")
        let made = try python(
            #"""
            import os, sys, numpy as np, jax, jax.numpy as jnp, keras
            from PIL import Image
            from keras import layers as L
            d = sys.argv[1]; os.makedirs(d + "/pics/sub"); os.makedirs(d + "/labels")
            r = np.random.default_rng(0)
            ref, kinds, scores, lines = [], [], [], ["image,kind,score"]
            for i in range(12):
                h, w = [(8, 6), (13, 9), (5, 4), (16, 12)][i % 4]
                name = "pics/sub/im%d.%s" % (i, "png" if i % 3 else "jpg")
                if i == 4:  # a gray PNG: replicated into RGB
                    Image.fromarray(r.integers(0, 256, (h, w)).astype(np.uint8)).save(d + "/" + name)
                else:
                    Image.fromarray(r.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(d + "/" + name, quality=90)
                pixels = np.asarray(Image.open(d + "/" + name).convert("RGB")).astype(np.float32)
                ref.append(np.asarray(jax.image.resize(jnp.asarray(pixels), (8, 6, 3), "linear", antialias=False)))
                kinds.append(int(r.integers(0, 3))); scores.append(float(r.normal()))
                lines.append("%s,%d,%r" % (name, kinds[-1], scores[-1]))
            open(d + "/data.csv", "w").write("\n".join(lines) + "\n")
            np.save(d + "/ref.npy", np.stack(ref))
            np.save(d + "/labels/kind.npy", np.array(kinds, np.float32)); np.save(d + "/labels/score.npy", np.array(scores, np.float32))
            x = keras.Input((8, 6, 3), name="image")
            keras.Model(x, L.Rescaling(1.0, name="same")(x)).save(d + "/identity.keras")
            y = L.Conv2D(4, 3, activation="relu", name="conv")(L.Rescaling(1 / 255.0, name="scale")(x))
            p = L.GlobalAveragePooling2D(name="pool")(y)
            m = keras.Model(x, [L.Dense(3, activation="softmax", name="kind")(p), L.Dense(1, name="score")(p)])
            m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy", "mse"])
            m.save(d + "/model.keras")
            """#)
        XCTAssertEqual(made.status, 0, made.stderr)
    }

    private func train(_ data: String, np: Int? = nil, out: String) throws -> RunResult {
        let args = [
            "train", "--model", dir + "/model.keras", "--data", data, "--epochs", "2", "--batch-size", "4", "--out",
            out,
        ]
        return try np.map { try Harness.mpi($0, args) } ?? Harness.tandem(args)
    }

    func testImagesFromACSVAreTheDecodedArraysAtOneAndTwoRanks() throws {
        let predicted = try Harness.tandem([
            "predict", "--model", dir + "/identity.keras", "--data", dir + "/data.csv", "--out", dir + "/seen",
        ])
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        let seen = try NPYArray(path: dir + "/seen/same.npy")
        let ref = try NPYArray(path: dir + "/ref.npy")
        XCTAssertEqual(seen.shape, [12, 8, 6, 3])
        var a = [Float](repeating: 0, count: 144)
        var b = a
        var worst: Float = 0
        for r in 0..<12 {
            seen.readFloats(row: r, into: &a)
            ref.readFloats(row: r, into: &b)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
        }
        // Pillow's pixels exactly; the resize to float32 rounding (2 ulps at 255).
        XCTAssertLessThanOrEqual(worst, 3.1e-5)
        // The arrays Tandem decoded, as a dataset directory: the same training, byte for byte.
        try FileManager.default.copyItem(atPath: dir + "/seen/same.npy", toPath: dir + "/labels/image.npy")
        for np in [nil, 2] as [Int?] {
            let fromCSV = try train(dir + "/data.csv", np: np, out: dir + "/csv-\(np ?? 1)")
            XCTAssertEqual(fromCSV.status, 0, fromCSV.stderr)
            XCTAssertTrue(fromCSV.stdout.contains("image files (rank 0): "), fromCSV.stdout)
            let fromArrays = try train(dir + "/labels", np: np, out: dir + "/npy-\(np ?? 1)")
            XCTAssertEqual(fromArrays.status, 0, fromArrays.stderr)
            XCTAssertEqual(
                try Data(contentsOf: URL(fileURLWithPath: dir + "/csv-\(np ?? 1)/weights.safetensors")),
                try Data(contentsOf: URL(fileURLWithPath: dir + "/npy-\(np ?? 1)/weights.safetensors")),
                "np \(np ?? 1)")
        }
        // uint8 images train as their float32 values (Keras casts them exactly).
        let pixels = (0..<(12 * 144)).map { Float(($0 * 97) % 256) }
        try FileManager.default.createDirectory(atPath: dir + "/u8", withIntermediateDirectories: true)
        for name in ["kind", "score"] {
            try FileManager.default.copyItem(atPath: dir + "/labels/\(name).npy", toPath: dir + "/u8/\(name).npy")
        }
        try pixels.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [12, 8, 6, 3], to: dir + "/labels/image.npy.f32")
        }
        try FileManager.default.removeItem(atPath: dir + "/labels/image.npy")
        try FileManager.default.moveItem(atPath: dir + "/labels/image.npy.f32", toPath: dir + "/labels/image.npy")
        // A uint8 .npy (descr '|u1'), written by hand: header, then the bytes.
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (12, 8, 6, 3), }"
        let padded = header + String(repeating: " ", count: 127 - 10 - header.utf8.count) + "\n"
        var bytes: [UInt8] =
            [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(padded.utf8.count), 0] + Array(padded.utf8)
        bytes += pixels.map { UInt8($0) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/u8/image.npy"))
        XCTAssertEqual(try train(dir + "/u8", out: dir + "/u8-run").status, 0)
        XCTAssertEqual(try train(dir + "/labels", out: dir + "/f32-run").status, 0)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: dir + "/u8-run/weights.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: dir + "/f32-run/weights.safetensors")))
    }

    func testUntrustedImagesStopTheRunNamingTheLineAndFile() throws {
        let csv = try String(contentsOfFile: dir + "/data.csv", encoding: .utf8)
        let png = try Data(contentsOf: URL(fileURLWithPath: dir + "/pics/sub/im1.png"))
        try png.prefix(png.count / 2).write(to: URL(fileURLWithPath: dir + "/pics/half.png"))
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: dir + "/pics/sub/im0.jpg"))
        // Cut in its entropy-coded data.
        try jpeg.prefix(jpeg.count - 10).write(to: URL(fileURLWithPath: dir + "/pics/half.jpg"))
        // A PNG whose header claims 100000 × 100000 (IHDR edited; libpng checks the CRC, so it is recomputed).
        var huge = [UInt8](png)
        for (k, v) in [UInt8(0x00), 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0].enumerated() { huge[16 + k] = v }
        var c: UInt32 = 0xFFFF_FFFF
        for byte in huge[12..<29] {
            c ^= UInt32(byte)
            for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        c = ~c
        for k in 0..<4 { huge[29 + k] = UInt8(c >> (24 - 8 * UInt32(k)) & 0xFF) }
        try Data(huge).write(to: URL(fileURLWithPath: dir + "/pics/huge.png"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/pics/out.png", withDestinationPath: "/etc/hostname")
        let cases = [
            ("pics/half.png", "corrupt or truncated PNG"), ("pics/half.jpg", "truncated JPEG"),
            ("pics/huge.png", "claims 100000 × 100000"), ("/etc/hostname", "absolute path"),
            ("pics/../../x.png", "leaves the CSV's folder"), ("pics/out.png", "outside the CSV's folder"),
            ("pics/none.png", "file not found"),
        ]
        var lines = csv.split(separator: "\n").map(String.init)
        for (np, (path, expected)) in zip([nil, 2, nil, nil, nil, 2, nil] as [Int?], cases) {
            // The last row: at two ranks, rank 1's shard.
            let original = lines[12]
            lines[12] = path + original.drop { $0 != "," }
            try (lines.joined(separator: "\n") + "\n").write(
                toFile: dir + "/bad.csv", atomically: true, encoding: .utf8)
            lines[12] = original
            let out = dir + "/bad-run"
            let run = try train(dir + "/bad.csv", np: np, out: out)
            XCTAssertEqual(run.status, 1, "\(path): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("bad.csv"), run.stderr)
            XCTAssertTrue(run.stderr.contains("line 13"), "\(path): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains(expected), "\(path): \(run.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(path): nothing written")
        }
    }
}
